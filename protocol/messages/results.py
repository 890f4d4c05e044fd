"""Fetching results (mesh, point cloud, edited images) in chunks, each checked against a SHA-256."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ValidationError
from ..schema import bounded, limit
from ..signing import BufferLike
from .edit import ArtifactInfo, check_job_id
from .registry import expect_buffers, message


@message("result_list_request", "request")
@dataclass(frozen=True)
class ResultListRequest:
    job_id: str

    def validate(self, path: str) -> None:
        check_job_id(self.job_id, f"{path}.job_id")


@message("result_list_reply", "reply")
@dataclass(frozen=True)
class ResultListReply:
    job_id: str
    artifacts: list[ArtifactInfo] = field(default_factory=list)


@message("result_fetch_request", "request")
@dataclass(frozen=True)
class ResultFetchRequest:
    """Bytes ``[offset, offset + length)`` of one artifact; a short read at the end of the file is normal."""

    job_id: str
    name: str = field(metadata=limit(min_len=1, max_len=256))
    offset: int = bounded(0, ge=0)
    length: int = bounded(8 * 1024 * 1024, ge=1, le=1024 * 1024 * 1024)

    def validate(self, path: str) -> None:
        check_job_id(self.job_id, f"{path}.job_id")
        if self.name.startswith("/") or ".." in self.name.split("/"):
            raise ValidationError("must be an artifact name from result_list_reply", field=f"{path}.name")


@message("result_fetch_reply", "reply")
@dataclass(frozen=True)
class ResultFetchReply:
    """Buffer 0 holds ``length`` bytes starting at ``offset``."""

    job_id: str
    name: str
    offset: int = field(metadata=limit(ge=0))
    length: int = field(metadata=limit(ge=0))
    size: int = field(metadata=limit(ge=0))
    """Total size of the artifact."""
    sha256: str = field(metadata=limit(min_len=64, max_len=64))
    """SHA-256 of the whole artifact, to check after the last chunk."""
    eof: bool = False

    def validate(self, path: str) -> None:
        if self.offset + self.length > self.size:
            raise ValidationError("offset + length beyond artifact size", field=f"{path}.length")

    def check_buffers(self, buffers: list[BufferLike]) -> None:
        expect_buffers(buffers, [self.length])
