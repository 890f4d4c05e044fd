#!/usr/bin/env python3
"""One entry point for setting up, testing, demoing and packaging in2n-blender.

    python3 build.py demo      # set up both environments, run the main job
    python3 build.py test      # set up the environments, run ruff, mypy and every test suite
    python3 build.py setup     # only create / refresh the environments
    python3 build.py addon     # build the installable Blender extension zip
    python3 build.py env-path backend|blender   # print an environment's python

Three environments, as in real life:

* ``backend``: Python 3.11 with torch, nerfstudio, diffusers (``requirements/backend.txt``).
* ``blender``: Python 3.13 with the ``bpy`` 5.2 module from PyPI, standing in for Blender's own Python in tests
  (``requirements/blender.txt``).
* ``blender42``: Python 3.11 with ``bpy`` 4.2 LTS (``requirements/blender42.txt``): the oldest Blender supported.

Environments live under ``$IN2N_ENV_DIR`` (default ``~/.cache/in2n-blender/envs``), named by a hash of their
requirements file, so every checkout and CI run on a machine re-uses them and a changed pin builds a fresh one.
A stamp file is written only after a complete install: an interrupted install is rebuilt, never half-used.
Stdlib only: this file must run on any Python >= 3.9 before anything is installed.
"""

from __future__ import annotations

import argparse
import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REQUIREMENTS = ROOT / "requirements"

#: Which interpreter each environment needs, and the requirements file that defines it.
ENVIRONMENTS = {
    "backend": {"python": (3, 11), "requirements": REQUIREMENTS / "backend.txt"},
    "blender": {"python": (3, 13), "requirements": REQUIREMENTS / "blender.txt"},
    "blender42": {"python": (3, 11), "requirements": REQUIREMENTS / "blender42.txt"},
}

#: Debian packages some wheels need at run time (open3d's libusb, Blender's X/GL client libraries).
SYSTEM_LIBRARIES = {
    "libusb-1.0.so.0": "libusb-1.0-0",
    "libXrender.so.1": "libxrender1",
    "libXi.so.6": "libxi6",
    "libXxf86vm.so.1": "libxxf86vm1",
    "libXfixes.so.3": "libxfixes3",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libSM.so.6": "libsm6",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
}


def log(message: str) -> None:
    # stderr, so that `$(python3 build.py env-path NAME)` captures only the interpreter
    print(f"[build] {message}", file=sys.stderr, flush=True)


def env_root() -> Path:
    return Path(os.environ.get("IN2N_ENV_DIR", Path.home() / ".cache" / "in2n-blender" / "envs"))


def interpreter_version(candidate: str) -> tuple[int, int] | None:
    """The (major, minor) an interpreter reports when run, or None if it does not run (e.g. a pyenv shim for a
    version that is installed but not selected exits 127)."""
    try:
        result = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = result.stdout.split()
    if result.returncode != 0 or len(parts) != 2:
        return None
    return int(parts[0]), int(parts[1])


def find_python(version: tuple[int, int]) -> str:
    """An interpreter of exactly ``version`` that runs: $IN2N_PYTHON_3_11-style override, this interpreter, pyenv's
    real installs (before its shims, which exist but fail for versions that are not selected), then PATH."""
    major, minor = version
    override = os.environ.get(f"IN2N_PYTHON_{major}_{minor}")
    candidates = [override] if override else []
    if sys.version_info[:2] == version:
        candidates.append(sys.executable)
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{major}.{minor}.*/bin/python{major}.{minor}"), reverse=True)
    candidates.append(shutil.which(f"python{major}.{minor}"))
    tried = []
    for candidate in candidates:
        if not candidate or candidate in tried:
            continue
        tried.append(candidate)
        if interpreter_version(candidate) == version:
            return candidate
    raise SystemExit(
        f"Python {major}.{minor} was not found (tried: {', '.join(tried) or 'nothing on PATH or in pyenv'}). "
        f"Install it (`pyenv install {major}.{minor}`, or your system's python{major}.{minor} package) "
        f"or point IN2N_PYTHON_{major}_{minor} at its interpreter."
    )


def missing_system_libraries() -> list[str]:
    try:
        cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return []
    return sorted({package for library, package in SYSTEM_LIBRARIES.items() if library not in cache})


def ensure_system_libraries() -> None:
    missing = missing_system_libraries()
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log(f"warning: system libraries missing ({', '.join(missing)}); install them with your package manager")
        return
    log(f"installing system libraries: {' '.join(missing)}")
    quiet = {"stdout": subprocess.DEVNULL, "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
    subprocess.run(["apt-get", "update", "-qq"], check=False, **quiet)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, **quiet)


def env_dir(name: str) -> Path:
    spec = ENVIRONMENTS[name]
    digest = hashlib.sha256(spec["requirements"].read_bytes()).hexdigest()[:12]
    return env_root() / f"{name}-{digest}"


def env_python(name: str) -> Path:
    return env_dir(name) / "bin" / "python"


def ensure_env(name: str) -> Path:
    """Create the environment if it is missing or incomplete; return its interpreter. Safe to run concurrently."""
    target = env_dir(name)
    stamp = target / ".complete"
    if stamp.exists():
        return env_python(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second caller waits here, then finds the stamp
        if stamp.exists():
            return env_python(name)
        spec = ENVIRONMENTS[name]
        python = find_python(spec["python"])
        log(f"creating the {name} environment in {target} (a few minutes, once per machine)")
        started = time.monotonic()
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(target)], check=True)
        pip = [str(env_python(name)), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "-r", str(spec["requirements"])], check=True)
        stamp.write_text(spec["requirements"].read_text())
        log(f"{name} environment ready in {time.monotonic() - started:.0f} s")
    return env_python(name)


def setup(names: list[str]) -> dict[str, Path]:
    ensure_system_libraries()
    return {name: ensure_env(name) for name in names}


def run(command: list[str], **kwargs) -> int:
    log("$ " + " ".join(str(part) for part in command))
    return subprocess.run([str(part) for part in command], cwd=ROOT, **kwargs).returncode


#: (environment, command) pairs run before the tests; any failure fails ``build.py test``. protocol/ is checked
#: ``--strict`` (pyproject.toml), bpy_shell against Blender's stubs with a looser profile (property annotations).
LINTERS = [
    ("backend", ["-m", "ruff", "check", "."]),
    ("backend", ["-m", "mypy", "--strict", "protocol", "capture"]),
    ("backend", ["-m", "mypy", "backend", "blender_addon/core"]),
    # bpy_shell against fake-bpy-module's stubs: they type context.scene and friends as Optional, property
    # annotations as invalid types and RNA overrides as incompatible, so those codes are off; call arity, returns,
    # assignments and undefined attributes of our own modules are still checked.
    ("blender", ["-m", "mypy", "blender_addon/bpy_shell", "--follow-imports=silent",
                 *(f"--disable-error-code={code}" for code in (
                     "valid-type", "name-defined", "override", "union-attr", "attr-defined", "arg-type", "misc",
                     "has-type", "operator", "index", "call-overload"))]),
]

#: (environment, test paths): torch code in the backend environment; the add-on in both Blenders (5.2 on Python 3.13
#: and 4.2 LTS on Python 3.11), each also running the protocol tests, since protocol/ must work on both Pythons.
SUITES = [
    ("backend", ["tests/protocol", "tests/backend"]),
    ("blender", ["tests/protocol", "tests/blender"]),
    ("blender42", ["tests/protocol", "tests/blender"]),
]


def command_test(args: argparse.Namespace) -> int:
    pythons = setup(list(ENVIRONMENTS))
    extra = list(args.pytest_args)
    failed = []
    if not args.no_lint:
        for name, command in LINTERS:
            started = time.monotonic()
            if run([pythons[name], *command]) != 0:
                failed.append(f"lint ({' '.join(command[1:3])})")
            log(f"{' '.join(command[1:3])}: {time.monotonic() - started:.0f} s")
    for name, paths in SUITES:
        started = time.monotonic()
        code = run([pythons[name], "-m", "pytest", *paths, *extra])
        log(f"{name} suite: exit {code} in {time.monotonic() - started:.0f} s")
        if code != 0:
            failed.append(f"{name} tests")
    if failed:
        log(f"FAILED: {', '.join(failed)}")
        return 1
    log("lint and all test suites passed")
    return 0


def command_demo(args: argparse.Namespace) -> int:
    pythons = setup(["backend", "blender"])
    env = {**os.environ, "IN2N_BACKEND_PYTHON": str(pythons["backend"])}
    return run([pythons["blender"], "-m", "demo", *args.demo_args], env=env)


def command_setup(args: argparse.Namespace) -> int:
    unknown = set(args.names) - set(ENVIRONMENTS)
    if unknown:
        raise SystemExit(f"unknown environment(s): {', '.join(sorted(unknown))}; choose from {', '.join(ENVIRONMENTS)}")
    for name, python in setup(args.names or list(ENVIRONMENTS)).items():
        print(f"{name}: {python}")
    return 0


def command_env_path(args: argparse.Namespace) -> int:
    # the same set-up as test and demo (system libraries too), so the printed interpreter can run everything
    print(setup([args.name])[args.name])
    return 0


def command_addon(args: argparse.Namespace) -> int:
    python = setup(["blender"])["blender"]
    return run([python, "-m", "blender_addon.packaging", *args.addon_args])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    test = sub.add_parser("test", help="set up both environments and run every test suite")
    test.add_argument("--no-lint", action="store_true", help="skip ruff and mypy")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra arguments passed to pytest")
    test.set_defaults(func=command_test)
    demo = sub.add_parser("demo", help="set up and run the main job (see README)")
    demo.add_argument("demo_args", nargs=argparse.REMAINDER, help="arguments passed to the demo")
    demo.set_defaults(func=command_demo)
    setup_parser = sub.add_parser("setup", help="create or refresh the environments")
    setup_parser.add_argument("names", nargs="*", metavar="ENV", help="backend and/or blender (default: both)")
    setup_parser.set_defaults(func=command_setup)
    env_path = sub.add_parser("env-path", help="create if needed and print an environment's python")
    env_path.add_argument("name", choices=list(ENVIRONMENTS))
    env_path.set_defaults(func=command_env_path)
    addon = sub.add_parser("addon", help="build the installable Blender extension zip into dist/")
    addon.add_argument("addon_args", nargs=argparse.REMAINDER, help="arguments passed to the packager")
    addon.set_defaults(func=command_addon)
    # Everything after `test`, `demo` or `addon` belongs to pytest / the demo / the packager, in its order (argparse
    # would reorder `demo --out X` into `X --out`); only `test --no-lint` is build.py's own.
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in PASSTHROUGH:
        own = [arg for arg in argv[1:] if arg == "--no-lint"] if argv[0] == "test" else []
        args = parser.parse_args([argv[0], *own])
        setattr(args, PASSTHROUGH[argv[0]], [arg for arg in argv[1:] if arg not in own])
    else:
        args = parser.parse_args(argv)
    return args.func(args)


#: Commands whose remaining arguments are passed on, and the attribute that holds them.
PASSTHROUGH = {"test": "pytest_args", "demo": "demo_args", "addon": "addon_args"}


if __name__ == "__main__":
    sys.exit(main())
