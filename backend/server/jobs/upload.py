"""Scene upload handlers: chunks are assembled in memory, the finished scene is checked (SHA-256) and written as a
nerfstudio scene off the server loop, so pings, cancels and other clients are answered meanwhile."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from protocol import SceneAssembler, ValidationError
from protocol import messages as m

from ..core import Request, Server
from .config import JobServiceConfig
from .store import JobStore

log = logging.getLogger(__name__)


@dataclass
class PendingUpload:
    assembler: SceneAssembler
    last_activity: float


def decoded_bytes(begin: m.SceneBeginRequest) -> int:
    """An upload's bytes as the server holds them while storing it: files and their decoded pixels."""
    return begin.total_bytes + sum(image.pixel_bytes for image in begin.all_images if image.encoded_bytes is not None)


class SceneUploads:
    """The three upload handlers. Uploads whose client went quiet are dropped after ``upload_idle_s``."""

    def __init__(self, server: Server, store: JobStore, config: JobServiceConfig) -> None:
        self.server, self.store, self.config = server, store, config
        self.pending: dict[str, PendingUpload] = {}  # only touched in the server loop thread
        self.ended: OrderedDict[str, None] = OrderedDict()
        """Recently ended upload ids (bounded): a chunk or end for one of them gets a clear error."""

    def register(self) -> None:
        self.server.register("scene_begin_request", self.begin)
        self.server.register("scene_chunk_request", self.chunk)
        self.server.register("scene_end_request", self.end)

    def _drop_idle(self) -> None:
        now = time.monotonic()
        for upload_id, upload in list(self.pending.items()):
            if now - upload.last_activity > self.config.upload_idle_s:
                log.warning("dropping upload %s: no chunk for %.0f s", upload_id, now - upload.last_activity)
                del self.pending[upload_id]

    def _get(self, upload_id: str) -> PendingUpload:
        upload = self.pending.get(upload_id)
        if upload is None and upload_id in self.ended:
            raise ValidationError(f"upload {upload_id!r} has ended: it takes no more chunks and ends only once",
                                  field="content.upload_id")
        if upload is None:
            raise ValidationError(f"no upload {upload_id!r} in progress (send scene_begin_request first)",
                                  field="content.upload_id")
        upload.last_activity = time.monotonic()
        return upload

    def begin(self, request: Request) -> m.SceneBeginReply:
        begin = request.content
        assert isinstance(begin, m.SceneBeginRequest)
        self._drop_idle()
        if begin.total_bytes > self.config.max_scene_bytes:
            raise ValidationError(f"scene of {begin.total_bytes / 2**20:.1f} MiB exceeds this server's limit of "
                                  f"{self.config.max_scene_bytes / 2**20:.1f} MiB (fewer or smaller images)",
                                  field="content.images")
        if begin.upload_id in self.pending or begin.upload_id in self.ended:
            raise ValidationError(f"upload {begin.upload_id!r} exists already: use a new upload_id",
                                  field="content.upload_id")
        # what an upload costs is its pixels once decoded, not its files: a 216 KB PNG may declare 8,192 px
        pending = sum(decoded_bytes(upload.assembler.begin) for upload in self.pending.values())
        if pending + decoded_bytes(begin) > self.config.max_pending_upload_bytes:
            raise ValidationError(f"uploads in progress already hold {pending / 2**20:.1f} MiB of this server's "
                                  f"{self.config.max_pending_upload_bytes / 2**20:.1f} MiB (decoded pixels); try again "
                                  "when they have finished", field="content.images")
        self.pending[begin.upload_id] = PendingUpload(SceneAssembler(begin), time.monotonic())
        log.info("upload %s: %d images, %.1f MiB", begin.upload_id, len(begin.images), begin.total_bytes / 2**20)
        return m.SceneBeginReply(upload_id=begin.upload_id, expected_bytes=begin.total_bytes,
                                 max_chunk_bytes=self.server.config.max_chunk_bytes)

    def chunk(self, request: Request) -> m.SceneChunkReply:
        chunk = request.content
        assert isinstance(chunk, m.SceneChunkRequest)
        upload = self._get(chunk.upload_id)
        received = upload.assembler.add_chunk(chunk, request.message.buffers)
        return m.SceneChunkReply(upload_id=chunk.upload_id, received_bytes=received,
                                 expected_bytes=upload.assembler.expected_bytes)

    def end(self, request: Request) -> None:
        end = request.content
        assert isinstance(end, m.SceneEndRequest)
        upload = self._get(end.upload_id)
        upload.assembler.close(end)  # here, in the loop thread: no chunk lands after this, and it ends once
        self.pending.pop(end.upload_id, None)
        self.ended[end.upload_id] = None
        while len(self.ended) > 4096:
            self.ended.popitem(last=False)

        def finish() -> None:
            try:
                upload.assembler.verify(end)  # completeness + SHA-256: raises ValidationError naming the field
                scene_id = self.store.write_scene(upload.assembler.begin, upload.assembler.images)
            except Exception as error:
                if not isinstance(error, ValidationError):
                    log.exception("storing upload %s failed", end.upload_id)
                request.fail(error)
                return
            begin = upload.assembler.begin
            log.info("upload %s stored as %s", end.upload_id, scene_id)
            request.reply(m.SceneEndReply(scene_id=scene_id, image_count=len(begin.images),
                                          total_bytes=begin.total_bytes))

        threading.Thread(target=finish, name=f"store-{end.upload_id}", daemon=True).start()
