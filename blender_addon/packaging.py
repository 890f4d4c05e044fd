"""Build the installable extension zip: ``python3 build.py addon`` runs ``<blender env python> -m
blender_addon.packaging``.

Steps: stage ``blender_addon/`` as the extension root, vendor the repository's ``protocol/`` and ``capture/`` packages
into it as subpackages (the add-on imports them relatively, see ``core/protocol_link.py``), put the pyzmq wheels the
manifest lists under ``wheels/`` (downloaded once with pip into ``~/.cache/in2n-blender/wheels``), then build and
validate with Blender's own extension tool (``blender_ext.py``, shipped inside the ``bpy`` package).
One zip per Python ABI (Blender infers Python versions from wheel names and cannot mix cp311 with abi3 wheels):
``dist/in2n_blender-<version>.zip`` for Blender 5.1+ (Python 3.13) and
``dist/in2n_blender-<version>-blender4.2-5.0.zip`` for Blender 4.2-5.0 (Python 3.11).
Prints one JSON line per zip: path, size, wheels and the validator's verdict.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

ADDON_DIR = Path(__file__).resolve().parent
REPO_ROOT = ADDON_DIR.parent
VENDORED = ("protocol", "capture")
"""Repository packages copied into the extension as subpackages of the same name (stdlib / pyzmq only)."""
WHEEL_CACHE = Path(os.environ.get("IN2N_WHEEL_CACHE", Path.home() / ".cache" / "in2n-blender" / "wheels"))
#: (Python version, pip platform tag) pairs whose pyzmq wheels cover Windows, Linux and macOS (universal2) on
#: Blender 4.2-5.0 (Python 3.11) and 5.1+ (Python 3.13, served by pyzmq's cp312-abi3 wheels).
WHEEL_TARGETS = [(py, plat) for py in ("3.11", "3.13")
                 for plat in ("manylinux_2_28_x86_64", "macosx_11_0_arm64", "macosx_10_15_x86_64", "win_amd64")]
STAGE_EXCLUDE = shutil.ignore_patterns("__pycache__", "*.pyc", "packaging.py", ".mypy_cache")


@dataclass(frozen=True)
class Variant:
    """One zip: the wheels of one Python ABI and the Blender versions that run that Python."""

    suffix: str
    """Appended to ``<id>-<version>`` in the zip name."""
    wheel_tag: str
    """Python and ABI tags of the wheels it bundles (``cp311-cp311``, ``cp312-abi3``)."""
    blender_version_min: str
    blender_version_max: str | None
    """First Blender version NOT supported (the manifest's exclusive upper bound)."""


VARIANTS = (
    Variant("", "cp312-abi3", "5.1.0", None),  # Blender 5.1+ (Python 3.13): the main target
    Variant("-blender4.2-5.0", "cp311-cp311", "4.2.0", "5.1.0"),  # Blender 4.2 LTS .. 5.0 (Python 3.11)
)


class PackagingError(RuntimeError):
    pass


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def variant_for(blender_version: tuple[int, ...]) -> Variant:
    """The zip variant whose Blender range holds ``blender_version`` (e.g. ``bpy.app.version``)."""
    for variant in VARIANTS:
        low = _version_tuple(variant.blender_version_min)
        high = _version_tuple(variant.blender_version_max) if variant.blender_version_max else None
        if tuple(blender_version) >= low and (high is None or tuple(blender_version) < high):
            return variant
    supported = ", ".join(f"{v.blender_version_min}..{v.blender_version_max or ''}" for v in VARIANTS)
    raise PackagingError(f"no extension zip serves Blender {'.'.join(map(str, blender_version))} "
                         f"(supported: {supported})")


def zip_for(built: list[dict[str, object]], blender_version: tuple[int, ...]) -> Path:
    """Of the zips :func:`build` returned, the one for ``blender_version``."""
    meta = manifest()
    name = f"{meta['id']}-{meta['version']}{variant_for(blender_version).suffix}.zip"
    for result in built:
        if Path(str(result["zip"])).name == name:
            return Path(str(result["zip"]))
    raise PackagingError(f"{name} was not built")


def manifest() -> dict:
    with open(ADDON_DIR / "blender_manifest.toml", "rb") as handle:
        return tomllib.load(handle)


def blender_ext_tool() -> Path:
    """``blender_ext.py`` inside the installed ``bpy`` wheel (Blender's extension builder and validator)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise PackagingError("the 'bpy' package is not installed in this Python: run with the blender environment")
    for location in spec.submodule_search_locations:
        found = sorted(glob.glob(os.path.join(location, "*", "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py")))
        if found:
            return Path(found[-1])
    raise PackagingError("blender_ext.py not found inside the bpy package")


def pyzmq_requirement() -> str:
    names = [Path(w).name for w in manifest().get("wheels", [])]
    versions = {name.split("-")[1] for name in names if name.startswith("pyzmq-")}
    if len(versions) != 1:
        raise PackagingError(f"manifest wheels must pin one pyzmq version, found {sorted(versions)}")
    return f"pyzmq=={versions.pop()}"


def ensure_wheels(cache: Path = WHEEL_CACHE) -> list[Path]:
    """The manifest's wheel files from the cache, downloading missing ones from the package index with pip."""
    names = [Path(w).name for w in manifest().get("wheels", [])]
    missing = [name for name in names if not (cache / name).is_file()]
    if missing:
        cache.mkdir(parents=True, exist_ok=True)
        requirement = pyzmq_requirement()
        for python_version, platform in WHEEL_TARGETS:
            subprocess.run([sys.executable, "-m", "pip", "download", requirement, "--only-binary=:all:", "--no-deps",
                            "--platform", platform, "--python-version", python_version, "-d", str(cache), "-q",
                            "--disable-pip-version-check"], check=True)
        missing = [name for name in names if not (cache / name).is_file()]
        if missing:
            raise PackagingError(f"pip did not provide these wheels listed in the manifest: {missing}")
    return [cache / name for name in names]


def variant_manifest(text: str, variant: Variant, wheels: list[Path]) -> str:
    """The manifest text for one variant: its wheels and its Blender version range."""
    block = "wheels = [\n" + "".join(f'  "./wheels/{w.name}",\n' for w in wheels) + "]"
    text, count = re.subn(r"(?ms)^wheels = \[.*?^\]", lambda _: block, text)
    if count != 1:
        raise PackagingError("blender_manifest.toml: expected one 'wheels = [...]' block")
    bounds = f'blender_version_min = "{variant.blender_version_min}"'
    if variant.blender_version_max:
        bounds += f'\nblender_version_max = "{variant.blender_version_max}"'
    text, count = re.subn(r'(?m)^blender_version_min = ".*"$', lambda _: bounds, text)
    if count != 1:
        raise PackagingError("blender_manifest.toml: expected one blender_version_min line")
    return text


def stage(target: Path, wheels: list[Path], variant: Variant) -> Path:
    """Lay out the extension folder: add-on code, vendored protocol and capture packages, the variant's wheels."""
    shutil.copytree(ADDON_DIR, target, ignore=STAGE_EXCLUDE)
    manifest_path = target / "blender_manifest.toml"
    manifest_path.write_text(variant_manifest(manifest_path.read_text(encoding="utf-8"), variant, wheels), encoding="utf-8")
    for package in VENDORED:
        if (target / package).exists():
            raise PackagingError(f"blender_addon/{package} exists: it would shadow the vendored {package} package")
        shutil.copytree(REPO_ROOT / package, target / package, ignore=STAGE_EXCLUDE)
    (target / "wheels").mkdir()
    for wheel in wheels:
        shutil.copy2(wheel, target / "wheels" / wheel.name)
    return target


def run_tool(tool: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise PackagingError(f"blender_ext {args[0]} failed:\n{result.stdout}{result.stderr}")
    return result.stdout.strip()


def build_variant(output_dir: Path, variant: Variant, wheels: list[Path], tool: Path, *, validate: bool) -> dict[str, object]:
    meta = manifest()
    zip_path = output_dir / f"{meta['id']}-{meta['version']}{variant.suffix}.zip"
    chosen = [wheel for wheel in wheels if f"-{variant.wheel_tag}-" in wheel.name]
    if not chosen:
        raise PackagingError(f"no {variant.wheel_tag} wheels in the manifest")
    with tempfile.TemporaryDirectory(prefix="in2n_addon_") as tmp:
        source = stage(Path(tmp) / meta["id"], chosen, variant)
        run_tool(tool, "build", "--source-dir", str(source), "--output-filepath", str(zip_path))
    verdict = run_tool(tool, "validate", str(zip_path)) if validate else "skipped"
    return {"zip": str(zip_path), "bytes": zip_path.stat().st_size, "id": meta["id"], "version": meta["version"],
            "blender": f"{variant.blender_version_min}..{variant.blender_version_max or ''}",
            "wheels": [wheel.name for wheel in chosen], "validate": verdict}


def build(output_dir: Path, *, validate: bool = True) -> list[dict[str, object]]:
    """Build (and validate) every variant's zip into ``output_dir``."""
    tool = blender_ext_tool()
    wheels = ensure_wheels()
    output_dir.mkdir(parents=True, exist_ok=True)
    return [build_variant(output_dir, variant, wheels, tool, validate=validate) for variant in VARIANTS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blender_addon.packaging", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "dist", help="where the zip goes (default dist/)")
    parser.add_argument("--no-validate", action="store_true", help="skip 'blender_ext validate' on the zip")
    args = parser.parse_args(argv)
    try:
        for result in build(args.output_dir, validate=not args.no_validate):
            print(json.dumps(result))
    except (PackagingError, subprocess.CalledProcessError, OSError) as exc:
        print(f"packaging failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
