"""The backend worker: a thread that owns the ZeroMQ client (sockets are not thread-safe), runs commands from the
main thread and turns replies and pushed events into notices for the main thread's timer to apply.

Liveness: the server sends heartbeats; when nothing was heard for ``3 x`` its interval the worker pings once and
reports a lost connection if that fails. Jobs live on the server, so a lost or closed connection loses nothing:
``Connect`` asks for a job snapshot and subscribes again (zguide "Clone").
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import worker_api as api
from .local_backend import BackendStartError, log_tail
from .pixels import to_blender_pixels
from .protocol_link import protocol
from .uploads import upload_image
from .user_errors import describe

log = logging.getLogger(__name__)
m = protocol.messages

ClientFactory = Callable[[Any], Any]
"""``factory(connection_info) -> protocol.Client`` (tests inject short timeouts)."""


def default_client_factory(info: Any) -> Any:
    return protocol.Client(info, timeout_s=10.0, retries=1, client_name="in2n-blender add-on")


def preview_array(event: Any, buffer: Any) -> np.ndarray:
    """The ``job_preview`` pixels as an ``H W C`` array (copied out of the ZeroMQ frame)."""
    dtype = np.dtype(event.image.dtype)
    return np.frombuffer(memoryview(buffer), dtype=dtype).reshape(event.image.shape).copy()


class BackendWorker:
    """Start with :meth:`start`; send commands with :meth:`submit`; drain :attr:`notices` on the main thread."""

    def __init__(self, client_factory: ClientFactory = default_client_factory, *, poll_s: float = 0.05) -> None:
        self.commands: queue.Queue[api.Command] = queue.Queue()
        self.notices: queue.Queue[api.Notice] = queue.Queue()
        self._client_factory = client_factory
        self._poll_s = poll_s
        self._client: Any = None
        self._heartbeat_s = 5.0
        self._dropped_events = 0
        """Events the server dropped for this connection so far (its heartbeats say; protocol 2.4)."""
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ main-thread side
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="in2n-backend-worker", daemon=True)
            self._thread.start()

    def submit(self, command: api.Command) -> None:
        self.start()
        self.commands.put(command)

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._thread is not None and self._thread.is_alive():
            self.commands.put(api.Stop())
            self._thread.join(timeout_s)
        self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def drain(self) -> list[api.Notice]:
        notices = []
        while True:
            try:
                notices.append(self.notices.get_nowait())
            except queue.Empty:
                return notices

    # ------------------------------------------------------------------ worker thread
    def _run(self) -> None:
        try:
            while True:
                try:
                    command = self.commands.get(timeout=self._poll_s if self._client is not None else 0.5)
                except queue.Empty:
                    command = None
                if isinstance(command, api.Stop):
                    break
                if command is not None:
                    self._handle(command)
                if self._client is not None:
                    self._pump_events()
        finally:
            self._close()

    def _handle(self, command: api.Command) -> None:
        name = type(command).__name__
        handler = getattr(self, f"_do_{name.lower()}")
        if not isinstance(command, (api.Connect, api.Disconnect)) and self._client is None:
            self.notices.put(api.Failed(self._action(command), "not connected to a backend: press Connect first"))
            return
        try:
            handler(command)
        except Exception as exc:  # every failure becomes a report for the user, never a dead thread
            url = self._client.info.url if self._client is not None else ""
            self.notices.put(api.Failed(self._action(command), describe(exc, action=self._action(command), url=url),
                                        getattr(exc, "ename", type(exc).__name__)))
            if isinstance(exc, (protocol.RequestTimeout, protocol.BadSignature)) and not isinstance(command, api.Connect):
                self._lost(describe(exc, url=url))

    @staticmethod
    def _action(command: api.Command) -> str:
        """The name the user knows the command by (it starts every failure report)."""
        return {"Connect": "Connect", "StartEdit": "Edit", "StartChainedEdit": "Edit from snapshot",
                "Estimate": "Estimate", "PreviewInstruction": "Preview instruction", "CancelPreview": "Cancel preview",
                "ListSnapshots": "List snapshots", "ExportSnapshot": "Import snapshot",
                "DeleteSnapshot": "Delete snapshot", "PinSnapshot": "Pin snapshot", "ContinueJob": "Continue",
                "Cancel": "Cancel",
                "FetchResults": "Import result", "SetPreview": "Preview settings",
                "Disconnect": "Disconnect"}.get(type(command).__name__, "Backend call")

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _lost(self, reason: str) -> None:
        self._close()
        self.notices.put(api.Disconnected(reason=reason))

    # ------------------------------------------------------------------ commands
    def _do_connect(self, command: api.Connect) -> None:
        self._close()
        info = command.info
        if info is None:
            deadline = time.monotonic() + command.wait_s
            while True:
                try:
                    info = protocol.read_connection_file(command.connection_file)
                    break
                except protocol.ConnectionFileError:
                    if command.process is not None and command.process.poll() is not None:
                        raise BackendStartError(
                            f"the backend exited with code {command.process.returncode} before it was ready:\n"
                            + log_tail(Path(command.log_file))) from None
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.1)
        client = self._client_factory(info)
        try:
            # ping first with the normal timeout: a dead backend is reported in seconds, while hello may
            # legitimately wait for the server's one-time GPU probe (it imports torch)
            client.ping("connect")
            hello = client.request(
                m.HelloRequest(protocol_versions=[protocol.PROTOCOL_VERSION], client_name=client.client_name),
                timeout_s=max(command.hello_timeout_s, client.timeout_s), retries=0,
            )
            protocol.version.check_compatible(hello.protocol_version, field="hello_reply.protocol_version")
            client.server = hello
            snapshot = client.snapshot(None, subscribe=True)
        except BaseException:
            client.close()
            raise
        self._client = client
        self._heartbeat_s = hello.heartbeat_interval_s or 5.0
        self._dropped_events = 0
        self.notices.put(api.Connected(url=info.url, hello=hello, jobs=list(snapshot.jobs)))

    def _do_disconnect(self, command: api.Disconnect) -> None:
        was_connected = self._client is not None
        self._close()
        if was_connected:
            self.notices.put(api.Disconnected(reason=""))

    def _do_startedit(self, command: api.StartEdit) -> None:
        images = [upload_image(image) for image in command.images]  # files are read here, off the main thread
        aux = [protocol.AuxUpload(item.camera_index, item.role, upload_image(item.path))
               if isinstance(item, api.AuxFile) else item for item in command.aux]
        end = self._client.upload_scene(
            command.cameras, images, aux=aux, meshes=command.meshes, scene_name=command.scene_name,
            progress=lambda done, total: self.notices.put(api.UploadProgress(done, total)), **command.metadata,
        )
        request = command.request
        fields = {name: getattr(request, name) for name in request.__dataclass_fields__}
        reply = self._client.start_edit(type(request)(**{**fields, "scene_id": end.scene_id}))
        self.notices.put(api.JobStarted(reply.job_id, reply.state, reply.queue_position, end.scene_id))
        self._client.snapshot(reply.job_id, subscribe=True)

    def _do_startchainededit(self, command: api.StartChainedEdit) -> None:
        reply = self._client.start_edit(command.request)
        self.notices.put(api.JobStarted(reply.job_id, reply.state, reply.queue_position, command.request.scene_id))
        self._client.snapshot(reply.job_id, subscribe=True)

    def _do_estimate(self, command: api.Estimate) -> None:
        self.notices.put(api.Answered(self._client.request(m.EditEstimateRequest(
            request=command.request, num_views=command.num_views, width=command.width, height=command.height))))

    def _do_previewinstruction(self, command: api.PreviewInstruction) -> None:
        image = upload_image(command.image)
        target = upload_image(command.target) if command.target is not None else None
        fields = {name: getattr(command.request, name) for name in command.request.__dataclass_fields__}
        request = type(command.request)(**{**fields, "image": image.info,
                                           "target": target.info if target is not None else None})
        buffers = [image.data] + ([target.data] if target is not None else [])
        self.notices.put(api.Answered(self._client.request(request, buffers)))

    def _do_listsnapshots(self, command: api.ListSnapshots) -> None:
        self.notices.put(api.Answered(self._client.request(m.NerfSnapshotListRequest(job_id=command.job_id))))

    def _do_exportsnapshot(self, command: api.ExportSnapshot) -> None:
        self.notices.put(api.Answered(self._client.request(
            m.NerfSnapshotExportRequest(job_id=command.job_id, step=command.step))))

    def _do_deletesnapshot(self, command: api.DeleteSnapshot) -> None:
        self.notices.put(api.Answered(self._client.request(
            m.NerfSnapshotDeleteRequest(job_id=command.job_id, step=command.step))))

    def _do_cancelpreview(self, command: api.CancelPreview) -> None:
        self._client.cancel(command.preview_id)  # the preview's own event ends it in the panel

    def _do_pinsnapshot(self, command: api.PinSnapshot) -> None:
        self.notices.put(api.Answered(self._client.request(
            m.NerfSnapshotPinRequest(job_id=command.job_id, step=command.step, pinned=command.pinned))))

    def _do_continuejob(self, command: api.ContinueJob) -> None:
        reply = self._client.request(m.JobContinueRequest(job_id=command.job_id, extra_steps=command.extra_steps))
        self.notices.put(api.Answered(reply))

    def _do_cancel(self, command: api.Cancel) -> None:
        reply = self._client.cancel(command.job_id)
        self.notices.put(api.ServerEvent(m.JobStateEvent(job_id=reply.job_id, state=reply.state)))

    def _do_setpreview(self, command: api.SetPreview) -> None:
        self._client.request(m.PreviewSettingsRequest(job_id=command.job_id, preview=command.preview))

    def _do_fetchresults(self, command: api.FetchResults) -> None:
        listing = self._client.request(m.ResultListRequest(job_id=command.job_id))
        wanted = [a for a in listing.artifacts
                  if (a.kind in command.kinds or (command.baked and "baked_surface" in a.metadata))
                  and a.metadata.get("snapshot_step") == command.snapshot_step
                  and (not command.names or a.name in command.names)]
        # a textured mesh's material and images come with it (they are named by its file)
        wanted += [a for a in listing.artifacts if a not in wanted and a.metadata.get("part_of") in
                   {w.name for w in wanted}]
        if not wanted:
            raise protocol.ValidationError(
                f"job {command.job_id} has no results of kind {', '.join(command.kinds)} (yet)", field="artifacts")
        files: dict[str, Path] = {}
        folder = Path(command.folder)
        for artifact in wanted:
            target = folder / artifact.name
            target.parent.mkdir(parents=True, exist_ok=True)
            files[artifact.name] = self._client.fetch_result(
                command.job_id, artifact.name, target,
                progress=lambda done, total, name=artifact.name: self.notices.put(api.FetchProgress(name, done, total)),
            )
        self.notices.put(api.ResultsFetched(command.job_id, files, wanted, command.import_files,
                                            command.snapshot_step))

    # ------------------------------------------------------------------ pushed events and liveness
    def _pump_events(self) -> None:
        try:
            received = self._client.poll_events(timeout_s=0.0)
        except protocol.ProtocolError as exc:
            self._lost(describe(exc, url=self._client.info.url))
            return
        for event in received:
            content = event.content
            if isinstance(content, m.InstructionPreviewEvent):
                pixels = None
                if content.image is not None:
                    try:
                        pixels = preview_array(content, event.message.buffers[0])
                    except (ValueError, TypeError, IndexError) as exc:
                        log.warning("bad instruction preview image: %s", exc)
                        continue
                self.notices.put(api.PreviewImage(content, pixels))
                continue
            if isinstance(content, m.Heartbeat) and content.dropped_events > self._dropped_events:
                self._catch_up(content.dropped_events)
                continue
            if isinstance(content, m.JobPreviewEvent):
                try:
                    pixels = preview_array(content, event.message.buffers[0])
                except (ValueError, TypeError, IndexError) as exc:
                    log.warning("bad preview image: %s", exc)
                    continue
                height, width = pixels.shape[:2]
                self.notices.put(api.PreviewReady(content.job_id, content.step, width, height,
                                                  to_blender_pixels(pixels), content.camera_index))
            else:
                self.notices.put(api.ServerEvent(content))
        self._check_alive()

    def _catch_up(self, dropped_events: int) -> None:
        """The server merged or dropped progress this add-on read too slowly (Blender was busy): list the jobs."""
        self._dropped_events = dropped_events
        assert self._client is not None
        try:
            snapshot = self._client.snapshot(None, subscribe=True)
        except protocol.ProtocolError as exc:
            log.warning("could not list the jobs to catch up: %s", describe(exc))
            return
        self.notices.put(api.JobsListed(jobs=list(snapshot.jobs)))

    def _check_alive(self) -> None:
        client = self._client
        if client is None or client.last_heard is None:
            return
        silent = time.monotonic() - client.last_heard
        if silent < max(3 * self._heartbeat_s, 2.0):
            return
        try:
            client.request(m.PingRequest(payload="alive?"), timeout_s=min(5.0, max(1.0, self._heartbeat_s)), retries=0)
        except protocol.ProtocolError as exc:
            self._lost(f"lost the connection to the backend at {client.info.url} ({describe(exc)}); jobs keep "
                       "running there: press Connect to pick them up again")
