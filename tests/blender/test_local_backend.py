"""'Start local backend' spawns a real ``python -m backend serve`` (backend environment) and connects to it."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import bpy
import pytest

from tests.blender.conftest import ADDON_MODULE, REPO_ROOT
from tests.blender.helpers import backend_python, pump_until

pytestmark = pytest.mark.timeout(180)


def test_start_connect_stop_local_backend(addon: ModuleType, scene: bpy.types.Scene) -> None:
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    prefs.backend_python, prefs.backend_root, prefs.backend_args = "", "", ""
    assert not bpy.ops.in2n.start_local_backend.poll()  # explains: set the backend Python first

    prefs.backend_python, prefs.backend_root = backend_python(), str(REPO_ROOT)
    prefs.backend_args = "--no-device-probe --heartbeat 0.5"
    assert bpy.ops.in2n.start_local_backend() == {"FINISHED"}
    rt = addon.bpy_shell.runtime.get()
    try:
        pump_until(addon, lambda: rt.state.connection == "connected" or bool(rt.state.last_error), timeout_s=90)
        assert rt.state.connection == "connected", rt.state.last_error
        assert rt.state.server.server_name == "in2n-blender backend"
        assert rt.state.server.pid == rt.local_backend.pid
        connection_file = Path(scene.in2n.connection_file)
        scratch = Path(bpy.utils.extension_path_user(ADDON_MODULE))
        assert scratch in connection_file.parents  # scratch files live in the extension's user folder
        assert not bpy.ops.in2n.start_local_backend.poll()
        assert bpy.ops.in2n.stop_local_backend() == {"FINISHED"}
        assert rt.local_backend is None
        pump_until(addon, lambda: rt.state.connection == "disconnected")
    finally:
        if rt.local_backend is not None:
            rt.local_backend.kill()


def test_backend_that_cannot_start_is_reported_with_its_log(addon: ModuleType, scene: bpy.types.Scene,
                                                            tmp_path: Path) -> None:
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    # a backend folder without the backend package behind a real Python: the error says which setting is wrong
    prefs.backend_python, prefs.backend_root, prefs.backend_args = backend_python(), str(tmp_path), ""
    with pytest.raises(RuntimeError, match="has no 'backend' package"):
        bpy.ops.in2n.start_local_backend()
    # a Python that starts but cannot run the server: the report quotes the server's log
    prefs.backend_root, prefs.backend_args = str(REPO_ROOT), "--no-such-option"
    assert bpy.ops.in2n.start_local_backend() == {"FINISHED"}
    rt = addon.bpy_shell.runtime.get()
    pump_until(addon, lambda: bool(rt.state.last_error), timeout_s=60)
    assert "exited with code 2" in rt.state.last_error and "--no-such-option" in rt.state.last_error
