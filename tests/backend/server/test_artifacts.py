"""A job directory's files as protocol artifacts: kinds and the metadata clients map them back to views with."""

from __future__ import annotations

import json

from backend.job.snapshots import SnapshotExport, SnapshotRecord, SnapshotStore
from backend.server.jobs.results import ArtifactIndex


def write_snapshot(store: SnapshotStore, step: int, views: tuple[int, ...]) -> None:
    names = {}
    for index in views:
        path = store.view_path(step, f"images/frame_{index:05d}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"png")
        names[f"images/frame_{index:05d}.png"] = path.relative_to(store.folder(step)).as_posix()
    store.model(step).write_bytes(b"weights")
    store.write_record(SnapshotRecord(step=step, editing_step=step - 10, reason="scheduled", views=names))


def test_snapshot_renders_name_the_training_view_and_step_they_show(tmp_path) -> None:
    work = tmp_path / "work"
    store = SnapshotStore(work / "snapshots")
    for step in (10, 25):
        write_snapshot(store, step, (0, 3))
    (work / "edited" / "images").mkdir(parents=True)
    (work / "edited" / "images" / "frame_00003.png").write_bytes(b"png")
    (work / "manifest.json").write_text(json.dumps({
        "edited_images": {"images/frame_00003.png": "edited/images/frame_00003.png"}}))
    index = ArtifactIndex()
    artifacts = {a.name: a for a in index.artifacts(work)}
    assert artifacts["images/frame_00003.png"].kind == "image"
    assert artifacts["images/frame_00003.png"].metadata == {"camera_index": 3}
    render = artifacts["snapshots/step-000000025/views/frame_00003.png"]
    assert render.kind == "other" and render.metadata == {"snapshot_step": 25, "view": "images/frame_00003.png",
                                                          "view_camera_index": 3}
    assert sorted(a.metadata["view_camera_index"] for a in artifacts.values() if a.kind == "other") == [0, 0, 3, 3]
    assert not [a for a in artifacts.values() if "model.ckpt" in a.name]  # weights stay on the server

    # an export appears in the listing as soon as it is written (the listing follows the folders, not a restart)
    (store.export_dir(25)).mkdir()
    (store.export_dir(25) / "mesh.ply").write_bytes(b"ply mesh")
    (store.export_dir(25) / "point_cloud.ply").write_bytes(b"ply cloud")
    store.write_export(25, SnapshotExport(mesh="export/mesh.ply", point_cloud="export/point_cloud.ply"))
    views, geometry = index.snapshot_artifacts(work, 25)
    assert sorted(v.metadata["view_camera_index"] for v in views) == [0, 3]
    assert {(g.name, g.kind) for g in geometry} == {("snapshots/step-000000025/export/mesh.ply", "mesh"),
                                                    ("snapshots/step-000000025/export/point_cloud.ply", "pointcloud")}
    assert all(g.metadata["snapshot_step"] == 25 for g in geometry)
    assert index.snapshot_artifacts(work, 10)[1] == []

    size = store.size_bytes(10)
    assert size == len(b"weights") + 2 * len(b"png") + (store.folder(10) / "snapshot.json").stat().st_size
    assert store.delete(10) == size and not store.folder(10).exists() and store.steps() == [25]
    assert not any(name.startswith("snapshots/step-000000010") for name in {a.name for a in index.artifacts(work)})
