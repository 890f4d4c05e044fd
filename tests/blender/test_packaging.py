"""The extension builds, validates with Blender's own tool, installs from its zip, and registers cleanly."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import addon_utils
import bpy
import pytest

from tests.blender.conftest import ADDON_MODULE, REPO_ROOT

pytestmark = pytest.mark.timeout(300)


def test_zips_validate_and_carry_the_right_wheels(built_zips: list[dict[str, Any]]) -> None:
    assert len(built_zips) == 2
    for built in built_zips:
        assert built["validate"].startswith("Success")
        with zipfile.ZipFile(str(built["zip"])) as archive:
            names = set(archive.namelist())
            manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
        # the protocol package is vendored, the repo-only packager is not shipped, no bytecode
        assert {"protocol/__init__.py", "protocol/client.py", "capture/__init__.py", "capture/colmap.py",
                "core/worker.py", "bpy_shell/__init__.py"} <= names
        assert "packaging.py" not in names and not any(n.endswith(".pyc") for n in names)
        wheels = [Path(w).name for w in manifest["wheels"]]
        assert {f"wheels/{w}" for w in wheels} <= names
        platforms = {("win" if "win_amd64" in w else "mac" if "macosx" in w else "linux") for w in wheels}
        assert platforms == {"win", "mac", "linux"}
        # the manifest names exactly the platforms its wheels serve (macOS wheels are universal2: both chips)
        served = {"win": {"windows-x64"}, "linux": {"linux-x64"}, "mac": {"macos-arm64", "macos-x64"}}
        assert set(manifest["platforms"]) == set().union(*(served[p] for p in platforms))
        assert all("universal2" in w for w in wheels if "macosx" in w)
        assert manifest["permissions"]["network"]
        if "blender4.2" in str(built["zip"]):
            assert all("-cp311-cp311-" in w for w in wheels)
            assert (manifest["blender_version_min"], manifest["blender_version_max"]) == ("4.2.0", "5.1.0")
        else:
            assert all("-cp312-abi3-" in w for w in wheels)
            assert manifest["blender_version_min"] == "5.1.0" and "blender_version_max" not in manifest


def test_validator_rejects_a_broken_manifest(tmp_path: Path) -> None:
    """The validation step is real: a manifest with a bad field fails it."""
    from blender_addon import packaging

    source = tmp_path / "broken"
    source.mkdir()
    text = (REPO_ROOT / "blender_addon" / "blender_manifest.toml").read_text()
    (source / "blender_manifest.toml").write_text(text.replace('version = "0.1.0"', 'version = "not a version"'))
    with pytest.raises(packaging.PackagingError, match="version"):
        packaging.run_tool(packaging.blender_ext_tool(), "validate", str(source))


def test_installed_from_zip_uses_the_vendored_protocol(addon: ModuleType) -> None:
    assert addon.__name__ == ADDON_MODULE
    assert addon.core.protocol_link.protocol.__name__ == f"{ADDON_MODULE}.protocol"
    assert addon.core.protocol_link.capture.__name__ == f"{ADDON_MODULE}.capture"
    assert ADDON_MODULE in bpy.context.preferences.addons
    scratch = Path(addon.bpy_shell.runtime.scratch_dir("renders"))
    assert scratch.is_dir() and Path(addon.__file__).parent not in scratch.parents


def _registered_names() -> set[str]:
    """Operators/panels show up in bpy.types; property groups and preferences report is_registered."""
    shell = sys.modules[f"{ADDON_MODULE}.bpy_shell"]
    return ({name for name in dir(bpy.types) if name.startswith("IN2N_")}
            | {cls.__name__ for cls in shell.CLASSES if cls.is_registered})


def test_register_unregister_twice_leaves_nothing(addon: ModuleType) -> None:
    expected = {cls.__name__ for cls in addon.bpy_shell.CLASSES}
    assert _registered_names() == expected
    for _ in range(2):
        addon_utils.disable(ADDON_MODULE)
        assert _registered_names() == set()
        assert addon.bpy_shell.runtime.peek() is None
        assert not hasattr(bpy.types.Scene, "in2n")
        with pytest.raises(KeyError):
            bpy.ops.in2n.connect.get_rna_type()
        addon_utils.enable(ADDON_MODULE)
        assert _registered_names() == expected
        assert bpy.context.scene.in2n.orbit_count == 8
        assert bpy.ops.in2n.connect.get_rna_type().identifier == "IN2N_OT_connect"


def test_core_imports_without_blender() -> None:
    """bpy-free modules import in a Python where importing bpy fails."""
    code = (
        "import sys; sys.modules['bpy'] = None; sys.modules['mathutils'] = None\n"
        "import blender_addon, blender_addon.core.camera_model, capture, "
        "blender_addon.core.poses, blender_addon.core.worker, blender_addon.core.session, "
        "blender_addon.core.local_backend, blender_addon.core.pixels\n"
        "import blender_addon.core.worker as w; print(w.protocol.__name__)\n"
        "try:\n    import blender_addon.bpy_shell\nexcept ImportError:\n    print('shell needs bpy')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["protocol", "shell", "needs", "bpy"]


def test_each_blender_version_gets_the_zip_built_for_it() -> None:
    from blender_addon import packaging

    assert packaging.variant_for((4, 2, 0)).wheel_tag == "cp311-cp311"
    assert packaging.variant_for((5, 0, 1)).wheel_tag == "cp311-cp311"
    assert packaging.variant_for((5, 1, 0)).wheel_tag == "cp312-abi3"
    assert packaging.variant_for((5, 2, 3)).wheel_tag == "cp312-abi3"
    with pytest.raises(packaging.PackagingError, match="4.1"):
        packaging.variant_for((4, 1, 0))


def test_a_zip_for_another_blender_is_refused_loudly(built_zips: list[dict[str, Any]], tmp_path: Path) -> None:
    """Blender answers FINISHED when it refuses a zip; the installer must notice and say so where it happens."""
    from blender_addon import packaging

    mine = packaging.zip_for(built_zips, bpy.app.version)
    other = next(Path(str(z["zip"])) for z in built_zips if Path(str(z["zip"])) != mine)
    script = ("import os, sys; os.environ['BLENDER_USER_RESOURCES'] = sys.argv[2]; import bpy; "
              "from pathlib import Path; from demo.addon_driver import install_zip; install_zip(Path(sys.argv[1]))")
    result = subprocess.run([sys.executable, "-c", script, str(other), str(tmp_path / "user")], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode != 0
    assert f"did not install and enable {other.name}" in result.stderr
