"""Fixtures for the add-on tests: an isolated Blender user folder, the built extension zip installed into the
``bpy`` module, fresh empty scenes, and backend servers (a real ``python -m backend serve`` process, or the real
server core in-process with scripted job handlers)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.blender.helpers import backend_python

# Before bpy is imported anywhere: Blender must not read or write the real user's config and extensions.
_USER_RESOURCES = tempfile.mkdtemp(prefix="in2n_blender_user_")
os.environ["BLENDER_USER_RESOURCES"] = _USER_RESOURCES

import bpy  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
ADDON_MODULE = "bl_ext.user_default.in2n_blender"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_USER_RESOURCES, ignore_errors=True)


@pytest.fixture(scope="session")
def built_zips(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Both extension zips, built and validated by the real packager (Blender's own blender_ext tool)."""
    from blender_addon import packaging

    return packaging.build(tmp_path_factory.mktemp("dist"), validate=True)


@pytest.fixture(scope="session")
def addon(built_zips: list[dict[str, Any]]) -> ModuleType:
    """The extension installed from the zip for this Blender version and enabled, as Blender users get it."""
    from blender_addon import packaging
    from demo.addon_driver import install_zip

    return install_zip(packaging.zip_for(built_zips, bpy.app.version))


@pytest.fixture
def scene(addon: ModuleType) -> Iterator[bpy.types.Scene]:
    """An empty scene (the add-on stays enabled); the add-on's runtime is shut down afterwards."""
    bpy.ops.wm.read_homefile(use_empty=True)
    yield bpy.context.scene
    addon.bpy_shell.runtime.shutdown()


@pytest.fixture
def backend_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A real ``python -m backend serve`` process (backend environment) and its connection file."""
    connection_file = tmp_path / "connection.json"
    log = open(tmp_path / "backend.log", "wb")
    process = subprocess.Popen(
        [backend_python(), "-m", "backend", "serve", "--connection-file", str(connection_file), "--no-device-probe",
         "--heartbeat", "0.5"], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not connection_file.exists():
            assert process.poll() is None, (tmp_path / "backend.log").read_text()
            assert time.monotonic() < deadline, "backend did not write its connection file"
            time.sleep(0.05)
        yield process, connection_file
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


RANDOM_ALEXNET = """
import sys, torch, torchvision
from pathlib import Path
from torchvision.models import AlexNet_Weights
target = Path(sys.argv[1]) / "hub" / "checkpoints"
target.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
torch.save(torchvision.models.alexnet(weights=None).state_dict(), target / Path(AlexNet_Weights.IMAGENET1K_V1.url).name)
"""


@pytest.fixture(scope="session")
def real_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A backend server process with job handlers (fails at once when it has none). TORCH_HOME holds RANDOM
    AlexNet weights (test-only: nerfacto builds an LPIPS metric at construction and nothing can be downloaded
    here); they are written after the capability check, before any job reads them."""
    import os
    import time

    import protocol

    tmp_path = tmp_path_factory.mktemp("real_backend")
    python = backend_python()
    torch_home = tmp_path / "torch_home"
    connection = tmp_path / "connection.json"
    log = open(tmp_path / "backend.log", "wb")
    process = subprocess.Popen([python, "-m", "backend", "serve", "--connection-file", str(connection),
                                "--no-device-probe", "--heartbeat", "1"], cwd=REPO_ROOT, stdout=log,
                               stderr=subprocess.STDOUT, env={**os.environ, "TORCH_HOME": str(torch_home)})
    try:
        deadline = time.monotonic() + 60
        while not connection.exists():
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "backend.log").read_text()
            time.sleep(0.05)
        with protocol.Client(protocol.read_connection_file(connection), timeout_s=30) as client:
            capabilities = client.hello().capabilities or []
            assert "edit_start_request" in capabilities, f"the backend server offers only {capabilities}"
        subprocess.run([python, "-c", RANDOM_ALEXNET, str(torch_home)], check=True, timeout=300)
        yield connection
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
