"""Valid sample content for every message type (tests build bad variants from these)."""

from __future__ import annotations

from typing import Any

from protocol import messages as m

IDENTITY = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 2.0], [0.0, 0.0, 0.0, 1.0]]
SHA = "0" * 64


def camera(w: int = 32, h: int = 24, **kw: Any) -> m.Camera:
    values: dict[str, Any] = dict(fl_x=40.0, fl_y=40.0, cx=w / 2, cy=h / 2, w=w, h=h, transform_matrix=IDENTITY)
    values.update(kw)
    return m.Camera(**values)


def artifact() -> m.ArtifactInfo:
    return m.ArtifactInfo(name="mesh.ply", kind="mesh", size=10, sha256=SHA)


def snapshot() -> m.NerfSnapshotInfo:
    return m.NerfSnapshotInfo(step=300, editing_step=0, reason="reconstruction", size_bytes=1000, views=[artifact()])


def samples() -> dict[str, tuple[Any, list[bytes]]]:
    """msg_type -> (valid content, buffers)."""
    progress = m.Progress(phase="editing", step=3, total_steps=10, fraction=0.3, eta_s=12.0, losses={"rgb": 0.1})
    items: list[tuple[Any, list[bytes]]] = [
        (m.HelloRequest(protocol_versions=["2.0"], client_name="t"), []),
        (m.HelloReply(protocol_version="2.0", server_name="s", server_version="0", python_version="3", pid=1,
                      limits=m.ServerLimits(max_frame_bytes=10, max_message_bytes=10)), []),
        (m.PingRequest(payload="x"), []),
        (m.PingReply(payload="x", server_time="t", uptime_s=1.0), []),
        (m.ShutdownRequest(reason="r"), []),
        (m.ShutdownReply(), []),
        (m.Heartbeat(server_time="t", interval_s=1.0), []),
        (m.ErrorReply(ename="E", evalue="v"), []),
        (m.SceneBeginRequest(upload_id="u", cameras=[camera()], images=[m.ImageInfo("uint8", [24, 32, 3])]), []),
        (m.SceneBeginReply(upload_id="u", expected_bytes=2304, max_chunk_bytes=1024), []),
        (m.SceneChunkRequest(upload_id="u", pieces=[m.ChunkPiece(0, 0, 4)]), [b"abcd"]),
        (m.SceneChunkReply(upload_id="u", received_bytes=4, expected_bytes=2304), []),
        (m.SceneEndRequest(upload_id="u", sha256=SHA), []),
        (m.SceneEndReply(scene_id="s", image_count=1, total_bytes=2304), []),
        (m.EditStartRequest(scene_id="s", instruction="make it snowy"), []),
        (m.EditStartReply(job_id="j", state="queued", queue_position=0), []),
        (m.PreviewSettingsRequest(job_id="j", preview=m.PreviewSettings(camera=camera())), []),
        (m.PreviewSettingsReply(job_id="j"), []),
        (m.CancelRequest(job_id="j"), []),
        (m.CancelReply(job_id="j", state="cancelled"), []),
        (m.JobSnapshotRequest(job_id=None), []),
        (m.JobSnapshotReply(jobs=[m.JobSnapshot(job_id="j", state="editing", scene_id="s", instruction="i",
                                                progress=progress, artifacts=[artifact()])]), []),
        (m.ResultListRequest(job_id="j"), []),
        (m.ResultListReply(job_id="j", artifacts=[artifact()]), []),
        (m.ResultFetchRequest(job_id="j", name="mesh.ply"), []),
        (m.ResultFetchReply(job_id="j", name="mesh.ply", offset=0, length=3, size=10, sha256=SHA), [b"abc"]),
        (m.JobStateEvent(job_id="j", state="editing"), []),
        (m.JobProgressEvent(job_id="j", progress=progress), []),
        (m.JobPreviewEvent(job_id="j", step=1, image=m.ImageInfo("uint8", [2, 2, 3])), [bytes(12)]),
        (m.JobLogEvent(text="hello", level="warning"), []),
        (m.JobResultEvent(job_id="j", artifacts=[artifact()]), []),
        (m.EditEstimateRequest(request=m.EditStartRequest(scene_id="pending", instruction="x"), num_views=8,
                               width=64, height=48), []),
        (m.EditEstimateReply(estimated_s=12.5, device="cpu", edits=3), []),
        (m.JobContinueRequest(job_id="j", extra_steps=100), []),
        (m.JobContinueReply(job_id="j", state="queued", total_steps=200), []),
        (m.InstructionPreviewRequest(instruction="make it snowy", image=m.ImageInfo("uint8", [2, 2, 3])), [bytes(12)]),
        (m.InstructionPreviewReply(preview_id="preview-1", cells=9), []),
        (m.InstructionPreviewEvent(preview_id="preview-1", kind="cell", index=2, count=9, guidance_scale=7.5,
                                   image_guidance_scale=1.5, image=m.ImageInfo("uint8", [2, 2, 3])), [bytes(12)]),
        (m.NerfSnapshotListRequest(job_id="j"), []),
        (m.NerfSnapshotListReply(job_id="j", snapshots=[snapshot()]), []),
        (m.NerfSnapshotExportRequest(job_id="j", step=300), []),
        (m.NerfSnapshotExportReply(job_id="j", step=300, state="queued"), []),
        (m.NerfSnapshotExportEvent(job_id="j", step=300, state="running", fraction=0.5), []),
        (m.NerfSnapshotEvent(job_id="j", snapshot=snapshot()), []),
        (m.NerfSnapshotDeleteRequest(job_id="j", step=300), []),
        (m.NerfSnapshotDeleteReply(job_id="j", step=300, freed_bytes=1000), []),
        (m.NerfSnapshotPinRequest(job_id="j", step=300), []),
        (m.NerfSnapshotPinReply(job_id="j", step=300, pinned=True), []),
    ]
    return {m.msg_type_of(content): (content, buffers) for content, buffers in items}
