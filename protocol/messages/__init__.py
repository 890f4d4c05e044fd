"""Every message type of the product, with its content schema. See ``protocol/SPEC.md`` for the table.

Use :func:`parse` on a received :class:`~protocol.wire.Message` to get its typed content, and :func:`build` to make a
message from typed content (it validates before sending, adds ``status: ok`` to replies).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ERRORS_BY_NAME, ProtocolError, RemoteError, ValidationError
from ..schema import decode, encode
from ..signing import BufferLike
from ..wire import JsonDict, Message, Session
from .edit import (
    FINAL_STATES,
    PRESETS,
    RUNNING_STATES,
    ArtifactInfo,
    CancelReply,
    CancelRequest,
    Condition,
    EditEstimateReply,
    EditEstimateRequest,
    EditRegion,
    EditStartReply,
    EditStartRequest,
    GeometrySettings,
    JobContinueReply,
    JobContinueRequest,
    JobSnapshot,
    JobSnapshotReply,
    JobSnapshotRequest,
    JobState,
    MemoryMode,
    Phase,
    Preset,
    PreviewSettings,
    PreviewSettingsReply,
    PreviewSettingsRequest,
    Progress,
    Schedule,
    SnapshotSettings,
    StartFrom,
)
from .events import JobLogEvent, JobPreviewEvent, JobProgressEvent, JobResultEvent, JobStateEvent
from .instruction_preview import InstructionPreviewEvent, InstructionPreviewReply, InstructionPreviewRequest
from .registry import REGISTRY, MessageSpec, msg_type_of, reply_type_for, spec_for
from .results import ResultFetchReply, ResultFetchRequest, ResultListReply, ResultListRequest
from .scene import (
    AUX_FOLDERS,
    AUX_FRAME_KEYS,
    DEPTH_UNIT_SCALE,
    DTYPE_SIZES,
    AuxImage,
    AuxRole,
    Camera,
    ChunkPiece,
    ImageInfo,
    SceneBeginReply,
    SceneBeginRequest,
    SceneChunkReply,
    SceneChunkRequest,
    SceneEndReply,
    SceneEndRequest,
    SurfaceMesh,
)
from .session import (
    ErrorReply,
    Heartbeat,
    HelloReply,
    HelloRequest,
    PingReply,
    PingRequest,
    ServerLimits,
    ShutdownReply,
    ShutdownRequest,
)
from .snapshots import (
    NerfSnapshotDeleteReply,
    NerfSnapshotDeleteRequest,
    NerfSnapshotEvent,
    NerfSnapshotExportEvent,
    NerfSnapshotExportReply,
    NerfSnapshotExportRequest,
    NerfSnapshotInfo,
    NerfSnapshotListReply,
    NerfSnapshotListRequest,
    NerfSnapshotPinReply,
    NerfSnapshotPinRequest,
)

__all__ = [
    "DEPTH_UNIT_SCALE", "EditRegion", "GeometrySettings", "Condition", "EditEstimateReply", "EditEstimateRequest",
    "InstructionPreviewEvent", "InstructionPreviewReply",
    "InstructionPreviewRequest", "JobContinueReply", "JobContinueRequest", "NerfSnapshotDeleteReply",
    "NerfSnapshotDeleteRequest", "NerfSnapshotEvent", "NerfSnapshotExportEvent", "NerfSnapshotExportReply",
    "NerfSnapshotExportRequest", "NerfSnapshotInfo", "NerfSnapshotListReply", "NerfSnapshotListRequest",
    "NerfSnapshotPinReply", "NerfSnapshotPinRequest",
    "SnapshotSettings", "StartFrom",
    "AUX_FOLDERS", "AUX_FRAME_KEYS", "AuxImage", "AuxRole",
    "FINAL_STATES", "REGISTRY", "DTYPE_SIZES", "ArtifactInfo", "Camera", "CancelReply", "CancelRequest", "ChunkPiece",
    "EditStartReply", "EditStartRequest", "ErrorReply", "Heartbeat", "HelloReply", "HelloRequest", "ImageInfo",
    "JobLogEvent", "JobPreviewEvent", "JobProgressEvent", "JobResultEvent", "JobSnapshot", "JobSnapshotReply",
    "JobSnapshotRequest", "JobState", "JobStateEvent", "MemoryMode", "Phase", "RUNNING_STATES", "MessageSpec", "PingReply", "PingRequest",
    "PreviewSettings", "PreviewSettingsReply", "PreviewSettingsRequest", "Progress", "ResultFetchReply",
    "ResultFetchRequest", "ResultListReply", "ResultListRequest", "SceneBeginReply", "SceneBeginRequest",
    "SceneChunkReply", "SceneChunkRequest", "SceneEndReply", "SceneEndRequest", "SurfaceMesh", "PRESETS", "Preset",
    "Schedule", "ServerLimits",
    "ShutdownReply", "ShutdownRequest", "build", "build_error", "error_content", "parse", "raise_for_error",
    "msg_type_of", "reply_type_for", "spec_for",
]


def parse(message: Message) -> Any:
    """Typed content of ``message`` (a schema dataclass instance); an error reply gives :class:`ErrorReply`.

    Raises :class:`UnknownMessageType` or :class:`ValidationError` (naming the field) for bad content or buffers.
    """
    spec = spec_for(message.msg_type)
    content = message.content
    if spec.kind == "reply":
        status = content.get("status")
        if status == "error":
            return decode(ErrorReply, content)
        if status != "ok":
            raise ValidationError(f"must be 'ok' or 'error', got {str(status)[:40]!r}", field="content.status")
    parsed: Any = decode(spec.content, content)
    check = getattr(parsed, "check_buffers", None)
    if check is not None:
        check(list(message.buffers))
    elif message.buffers:
        raise ValidationError(f"{spec.msg_type} carries no binary buffers, got {len(message.buffers)}", field="buffers")
    return parsed


def build(
    session: Session,
    content: Any,
    *,
    parent: Message | None = None,
    buffers: Sequence[BufferLike] = (),
    msg_id: str | None = None,
    metadata: JsonDict | None = None,
) -> Message:
    """A message whose content is the (validated) schema instance ``content``; replies get ``status: ok``."""
    msg_type = msg_type_of(content)
    body = encode(content)
    if REGISTRY[msg_type].kind == "reply":
        body["status"] = "ok"
    check = getattr(content, "check_buffers", None)
    if check is not None:
        check(list(buffers))
    elif buffers:
        raise ValidationError(f"{msg_type} carries no binary buffers", field="buffers")
    return session.msg(msg_type, body, parent=parent, buffers=buffers, msg_id=msg_id, metadata=metadata)


def error_content(ename: str, evalue: str, field: str | None = None, **details: Any) -> JsonDict:
    return {"status": "error", "ename": ename, "evalue": evalue, "field": field, "details": details}


def build_error(session: Session, parent: Message | None, error: ProtocolError | Exception) -> Message:
    """Error reply to ``parent`` (reply type derived from the request type; ``error_reply`` if unknown)."""
    if isinstance(error, ProtocolError):
        content = error_content(error.ename, error.message, error.field)
    else:
        content = error_content(type(error).__name__, str(error) or type(error).__name__)
    msg_type = reply_type_for(str(parent.header.get("msg_type", ""))) if parent is not None else "error_reply"
    return session.msg(msg_type, content, parent=parent)


def raise_for_error(parsed: Any) -> None:
    """Raise the error an :class:`ErrorReply` describes: the protocol's own class when ``ename`` is one of them
    (so a client sees ``BadSignature`` or ``ValidationError``), else :class:`RemoteError`."""
    if isinstance(parsed, ErrorReply):
        cls = ERRORS_BY_NAME.get(parsed.ename)
        if cls is not None and cls is not ProtocolError:
            raise cls(parsed.evalue, field=parsed.field)
        raise RemoteError(parsed.ename, parsed.evalue, field=parsed.field)
