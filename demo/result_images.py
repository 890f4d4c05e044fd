"""The images of a demo run's result: the edited images and the NeRF's renders the add-on downloaded, copied by
camera name, and the final NeRF rendered at held-out cameras (by ``demo.nerf_views`` in the backend's environment)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import bpy

from demo import procedural_scene as ps
from demo.addon_driver import DemoError
from demo.progress import say
from demo.recorder import Recorder

ROOT = Path(__file__).resolve().parents[1]


def edited_images(recorder: Recorder, uploaded: list[str], folder: Path) -> dict[str, Path]:
    """Copy the downloaded edited images to ``folder/<camera>.png`` by the artifact's camera index."""
    record, copied = recorder.record, {}
    for name, info in record.artifacts.items():
        index = info["metadata"].get("camera_index")
        if info["kind"] != "image" or not isinstance(index, int) or not 0 <= index < len(uploaded):
            continue
        target = folder / f"{uploaded[index]}{record.result_files[name].suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(record.result_files[name], target)
        copied[uploaded[index]] = target
    return copied


def nerf_views(recorder: Recorder, downloaded: dict[str, Path], uploaded: list[str], folder: Path) -> dict[str, Path]:
    """The newest snapshot render of each training view, copied to ``folder/<camera>.png``."""
    newest: dict[int, tuple[int, Path]] = {}
    for name, path in downloaded.items():
        metadata = recorder.record.artifacts.get(name, {}).get("metadata", {})
        index, step = metadata.get("view_camera_index"), metadata.get("snapshot_step")
        if isinstance(index, int) and isinstance(step, int) and 0 <= index < len(uploaded):
            if index not in newest or step > newest[index][0]:
                newest[index] = (step, path)
    copied = {}
    for index, (_, path) in newest.items():
        target = folder / f"{uploaded[index]}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        copied[uploaded[index]] = target
    return copied


def nerf_heldout(backend_python: str, job_id: str, cameras: list[bpy.types.Object], out: Path,
                 size: int) -> list[Path]:
    """The job's final NeRF rendered from the held-out turntable cameras (``demo.nerf_views`` in the backend's
    environment, on the job folder of the backend the demo started); none when that folder is not on this machine
    (a backend elsewhere)."""
    job = out / "work" / "jobs" / "jobs" / job_id / "work"
    if not job.is_dir():
        say(f"note: the job folder is not on this machine ({job}): the NeRF is not scored on held-out views")
        return []
    folder = out / "turntable" / "nerf"
    plan = {"job": str(job), "out": str(folder), "cameras": [
        {"name": camera.name, "transform_matrix": [list(map(float, row)) for row in camera.matrix_world],
         **{key: getattr(k, key) for key in ("fl_x", "fl_y", "cx", "cy")}, "w": size, "h": size}
        for camera in cameras for k in [ps.camera_intrinsics(camera, size, size)]]}
    plan_path = out / "work" / "nerf_views.json"
    plan_path.write_text(json.dumps(plan))
    completed = subprocess.run([backend_python, "-m", "demo.nerf_views", str(plan_path)], cwd=ROOT,
                               capture_output=True, text=True, timeout=600)
    if completed.returncode != 0:
        raise DemoError(f"rendering the NeRF at the held-out views failed:\n{completed.stderr[-3000:]}")
    return [folder / f"{camera.name}.png" for camera in cameras]
