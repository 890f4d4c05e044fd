"""A job directory's files as protocol artifacts: kinds and the metadata clients map them back to views with."""

from __future__ import annotations

import json

from backend.server.jobs.results import ArtifactIndex


def test_history_renders_name_the_training_view_they_show(tmp_path) -> None:
    work = tmp_path / "work"
    for step in (10, 25):
        (work / "history" / f"step-{step:09d}").mkdir(parents=True)
        for index in (0, 3):
            (work / "history" / f"step-{step:09d}" / f"frame_{index:05d}.png").write_bytes(b"png")
    (work / "edited" / "images").mkdir(parents=True)
    (work / "edited" / "images" / "frame_00003.png").write_bytes(b"png")
    (work / "manifest.json").write_text(json.dumps({
        "history": ["history/step-000000010", "history/step-000000025"],
        "edited_images": {"images/frame_00003.png": "edited/images/frame_00003.png"}}))
    artifacts = {a.name: a for a in ArtifactIndex().artifacts(work)}
    assert artifacts["images/frame_00003.png"].kind == "image"
    assert artifacts["images/frame_00003.png"].metadata == {"camera_index": 3}
    render = artifacts["history/step-000000025/frame_00003.png"]
    assert render.kind == "other" and render.metadata == {"history_step": 25, "view": "frame_00003.png",
                                                          "view_camera_index": 3}
    assert sorted(a.metadata["view_camera_index"] for a in artifacts.values() if a.kind == "other") == [0, 0, 3, 3]
