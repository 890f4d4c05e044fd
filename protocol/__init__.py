"""in2n-blender's message protocol: ZeroMQ frames, HMAC signing, typed and validated message contents.

Pure Python (stdlib + pyzmq), Python 3.11-3.13, no torch, no bpy. Internal imports are relative so the Blender
add-on can vendor this package as a subpackage. The public API is documented in ``protocol/SPEC.md``.
"""

from __future__ import annotations

from . import messages
from .client import Client, Received
from .connection import (
    ConnectionInfo,
    check_bind,
    ensure_private_dir,
    is_loopback,
    new_key,
    read_connection_file,
    write_connection_file,
)
from .durations import format_duration
from .errors import (
    BadSignature,
    ConnectionFileError,
    MalformedMessage,
    OversizedMessage,
    ProtocolError,
    RemoteError,
    ReplayedMessage,
    RequestTimeout,
    UnknownMessageType,
    ValidationError,
    VersionMismatch,
)
from .upload import AuxUpload, MeshUpload, RawImage, SceneAssembler, plan_chunks, scene_sha256
from .version import PROTOCOL_VERSION, negotiate
from .wire import DELIMITER, Limits, Message, Session

__all__ = [
    "DELIMITER", "PROTOCOL_VERSION", "AuxUpload", "BadSignature", "MeshUpload", "Client", "ConnectionFileError", "ConnectionInfo", "Limits",
    "MalformedMessage", "Message", "OversizedMessage", "ProtocolError", "RawImage", "Received", "RemoteError",
    "ReplayedMessage", "RequestTimeout", "SceneAssembler", "Session", "UnknownMessageType", "ValidationError",
    "VersionMismatch", "check_bind", "ensure_private_dir", "format_duration", "is_loopback", "messages", "negotiate", "new_key",
    "plan_chunks", "read_connection_file", "scene_sha256", "write_connection_file",
]
