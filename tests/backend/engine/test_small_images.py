"""Images smaller than the LPIPS patch are a bad scene for that configuration: said at once, by name, exit 3."""

from __future__ import annotations

import pytest

from backend.config import EditJobConfig, tiny_nerf_config
from backend.engine import EditEngine
from tests.backend.engine.editors import ChannelSwapEditor
from tests.helpers.scenes import make_tiny_scene

pytestmark = pytest.mark.timeout(300)


def test_lpips_on_images_under_32_px_fails_as_a_bad_scene_before_training(tmp_path):
    scene = make_tiny_scene(tmp_path / "scene", num_views=4, size=24)
    config = EditJobConfig(prompt="make it blue", device="cpu",
                           nerf=tiny_nerf_config(use_lpips=True, patch_size=32))
    result = EditEngine(config, ChannelSwapEditor()).run(scene.path, tmp_path / "job")
    assert result.status == "failed" and result.error_kind == "SceneError"
    assert "32 px" in result.error and "--no-lpips" in result.error and "24 x 24" in result.error
    assert not list((tmp_path / "job").glob("checkpoints/*.ckpt"))  # nothing was trained


def test_the_cli_reports_it_with_the_bad_scene_exit_code(tmp_path, capsys):
    from backend.cli_edit import EXIT_BAD_SCENE, main

    scene = make_tiny_scene(tmp_path / "scene", num_views=4, size=24)
    code = main(["--data", str(scene.path), "--prompt", "make it blue", "--output", str(tmp_path / "job"),
                 "--editor", "tiny", "--tiny-nerf", "--device", "cpu", "--quiet"])
    assert code == EXIT_BAD_SCENE
    assert "--no-lpips" in capsys.readouterr().err
