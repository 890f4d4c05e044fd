"""Two scenes of the procedural set nobody tuned the product for (benchmarks/scene_set: the whole set is a
benchmark), rendered with the add-on's own depth-and-mask pass and surface upload, then edited by real jobs with
the *quick* preset's settings as the server resolves them: each gives its edit back on the user's object and
geometry from its NeRF near Blender's own surface (the toy cube's small NeRF used to stay transparent, and surfaces
settled inside the depth loss's wide window: benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.blender.helpers import REPO_ROOT, backend_python

pytestmark = [pytest.mark.timeout(1500), pytest.mark.slow]
SCENES = ("toy_cube", "dark_suzanne")


def test_two_scenes_nobody_tuned_for_give_their_edit_back(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    environment = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "blender_user")}
    # a process of its own: building a scene starts from Blender's factory settings
    subprocess.run([sys.executable, "-m", "benchmarks.scene_set.render_scenes", "--out", str(scenes), "--size", "64",
                    "--only", *SCENES], cwd=REPO_ROOT, env=environment, check=True, capture_output=True, timeout=600)
    for name in SCENES:
        assert (scenes / name / "surfaces.json").is_file() and len(list((scenes / name / "knowledge").iterdir())) >= 6
    completed = subprocess.run([backend_python(), "-m", "benchmarks.scene_set.run", "--scenes", str(scenes),
                                "--preset", "quick", "--bake-resolution", "128"], cwd=REPO_ROOT, capture_output=True,
                               text=True, timeout=1400)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    by_scene = {row["scene"]: row for row in rows if "scene" in row}
    assert sorted(by_scene) == sorted(SCENES)
    for name, row in by_scene.items():
        assert row["status"] == "done", (name, row["error"])
        bake = row["bake"]
        assert bake["coverage"] > 0.5, (name, bake)
        # the texture shows the object as Blender does, its original look or the edit's (the quick preset's 60
        # editing steps take the simulated editor part of the way): the NeRF's renders, projected onto the
        # user's own surface; a flat fill or another object's colours score far lower
        assert max(bake["psnr_vs_intended_edit_bake_db"], bake["psnr_vs_original_bake_db"]) > 15.0, (name, bake)
        # geometry: the point cloud's median distance to Blender's surfaces and back, in the object's radii (the
        # issue's bar is 5 %, met by both at 96 px in the benchmark; 64 px here, so a little slack)
        cloud = row["geometry"]["point_cloud"]
        assert cloud is not None, (name, row["geometry"])
        assert cloud["accuracy_median"] < 0.06 and cloud["completeness_median"] < 0.06, (name, cloud)
    summary = rows[-1]["summary"]
    assert summary["baked"] == len(SCENES) and summary["geometry_exported"] == len(SCENES)
