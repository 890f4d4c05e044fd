"""The instruction preview handler: the job's editor edits one view for a grid of guidance scales (2D, seconds on a
GPU), streamed back as ``instruction_preview`` events.

While a job runs with the same editor, the preview is made by that job between two NeRF steps (one model in memory);
otherwise by a preview thread with the service's cached editor. A job that starts meanwhile takes that editor over
before the preview's next DDIM step (never loads a second, never waits for a whole grid), and makes the rest.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protocol import ValidationError
from protocol import messages as m

from ..core import Request
from .editors import editor_key
from .images import decode_image
from .requests import job_config
from .service_view import JobServiceView
from .store import new_id, to_uint8_rgb

log = logging.getLogger(__name__)

MAX_PREVIEW_PIXELS = 4096 * 4096
"""Largest picture a 2D preview decodes (the editor works on far fewer pixels: a view, not a poster)."""


class PreviewStopped(Exception):
    """The server stopped while a preview grid was being edited."""


def simulated(config: Any) -> bool:
    return bool(config.editor.source == "simulated")


@dataclass
class PreviewTask:
    preview_id: str
    identity: bytes
    """The client that asked: the events go to it alone."""
    request: m.InstructionPreviewRequest
    image: np.ndarray
    target: np.ndarray | None
    """The view's intended edit (used by the simulated editor only)."""
    editor_key: tuple[Any, ...]
    config: Any
    """The EditJobConfig its editor settings come from."""
    stop: threading.Event = field(default_factory=threading.Event)
    """Set by the client's cancel: the edit stops before its next DDIM step, a queued one never starts."""


class InstructionPreviews:
    def __init__(self, jobs: JobServiceView) -> None:
        self.jobs = jobs
        self._queue: queue.Queue[PreviewTask | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="in2n-previews", daemon=True)
        self._closing = threading.Event()
        # PNG / JPEG pictures are decoded here, never in the server loop (a 140 KB PNG declaring 12,000 px stalled
        # every client's ping for 1.4 s); one at a time, as uploads are
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="in2n-preview-decode")
        self._lock = threading.Lock()
        self.active: dict[str, tuple[bytes, threading.Event]] = {}
        """Previews being decoded, waiting or running: the client each belongs to, and its stop event."""

    def start(self) -> None:
        self.jobs.server.register("instruction_preview_request", self._preview)
        self.jobs.server.on_client_gone.append(self._client_gone)
        self._thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop at once: the queued previews are dropped and the running one stops before its next DDIM step (a
        server told to stop must not first work through every grid it was asked for)."""
        self._closing.set()
        dropped = 0
        while True:
            try:
                dropped += self._queue.get_nowait() is not None
            except queue.Empty:
                break
        if dropped:
            log.info("stopping: %d queued instruction previews dropped", dropped)
        self._decoder.shutdown(wait=False, cancel_futures=True)
        self._queue.put(None)
        self._thread.join(timeout_s)

    def cancel(self, preview_id: str, identity: bytes) -> bool:
        """Stop one of this client's previews (before its next DDIM step; a waiting one never starts)."""
        with self._lock:
            owner, stop = self.active.get(preview_id, (None, None))
        if stop is None or owner != identity:
            return False
        stop.set()
        return True

    def _client_gone(self, identity: bytes) -> None:
        """Its previews stop before their next DDIM step: nobody would see them (a gone client's grids kept the
        editor, and a job's steps, busy for minutes)."""
        with self._lock:
            stops = [stop for owner, stop in self.active.values() if owner == identity]
        for stop in stops:
            stop.set()
        if stops:
            log.info("client %r is gone: its %d 2D previews stop", identity, len(stops))

    def _admit(self, identity: bytes) -> tuple[str, threading.Event]:
        """A slot for one more preview of this client, or a refusal naming the limit in the panel's words."""
        config = self.jobs.server.config
        with self._lock:
            mine = sum(owner == identity for owner, _ in self.active.values())
            if mine >= config.max_previews_per_client:
                raise ValidationError(f"you already have {mine} 2D previews waiting or running (this server's limit "
                                      f"per client is {config.max_previews_per_client}): wait for one to finish or "
                                      "cancel it")
            if len(self.active) >= config.max_previews:
                raise ValidationError(f"the server already has {len(self.active)} 2D previews waiting or running "
                                      f"(its limit is {config.max_previews}): try again in a moment")
            preview_id, stop = new_id("preview"), threading.Event()
            self.active[preview_id] = (identity, stop)
        return preview_id, stop

    def _release(self, preview_id: str) -> None:
        with self._lock:
            self.active.pop(preview_id, None)

    def _preview(self, request: Request) -> None:
        """Cheap checks here, in the server loop; the pictures are decoded and the reply sent by the decoder."""
        content = request.content
        assert isinstance(content, m.InstructionPreviewRequest)
        edit = m.EditStartRequest(scene_id="preview", instruction=content.instruction, memory_mode=content.memory_mode,
                                  engine_overrides=content.engine_overrides)
        config = job_config(edit, self.jobs.config)  # the edit's own rules: editor sources, devices, ranges
        if simulated(config) and content.target is None:
            raise ValidationError("the simulated editor needs the view's intended edit (a target image)",
                                  field="content.target")
        for name, info in (("image", content.image), ("target", content.target)):
            if info is not None and info.shape[0] * info.shape[1] > MAX_PREVIEW_PIXELS:
                raise ValidationError(f"a {info.shape[1]}x{info.shape[0]} picture is larger than a 2D preview takes "
                                      f"(at most {MAX_PREVIEW_PIXELS // 2**20} megapixels)", field=f"content.{name}")
        preview_id, stop = self._admit(request.identity)
        try:
            self._decoder.submit(self._decode_and_start, request, preview_id, stop, config)
        except RuntimeError:  # the server is stopping
            self._release(preview_id)
            raise ValidationError("the server is stopping") from None

    def _decode_and_start(self, request: Request, preview_id: str, stop: threading.Event, config: Any) -> None:
        content = request.content
        buffers = list(request.message.buffers)
        try:
            # grey, 16-bit and float pictures become the 8-bit RGB the editor takes (they used to fail inside
            # torch, or be edited as garbage)
            image = to_uint8_rgb(decode_image(content.image, buffers[0], "content.image"))[..., :3]
            target = (to_uint8_rgb(decode_image(content.target, buffers[1], "content.target"))[..., :3]
                      if content.target is not None else None)
        except Exception as error:
            self._release(preview_id)
            request.fail(error)
            return
        task = PreviewTask(preview_id, request.identity, content, image, target, editor_key(config), config, stop)
        request.reply(m.InstructionPreviewReply(preview_id=preview_id, cells=content.cells,
                                                editor=config.editor.source))
        log.info("instruction preview %s: %d cells of %r with %s", preview_id, content.cells, content.instruction,
                 config.editor.source)
        if simulated(config) or not self._hand_to_job(task):
            self._queue.put(task)

    def _hand_to_job(self, task: PreviewTask) -> bool:
        """Give ``task`` to the running job when it edits with the same editor (one model in memory), to be made
        between two of its steps; False when no such job runs, or it is stopping."""
        engine, job_stop = self.jobs.running_engine(), self.jobs.stop_running
        if engine is None or job_stop.is_set() or editor_key(engine.config) != task.editor_key:
            return False
        return engine.call_between_steps(lambda editor: self._run_in_job(task, job_stop, editor))

    def _run_in_job(self, task: PreviewTask, job_stop: threading.Event, editor: Any) -> None:
        """Between a job's steps. A job told to stop does not wait for the preview: it is interrupted before its
        next DDIM step and made again by the preview thread (``editor`` None: the job ended before serving it)."""
        if editor is None or job_stop.is_set() or self._run(task, editor, interrupt=job_stop):
            self._queue.put(task)

    def _wait_for_the_editor(self, task: PreviewTask) -> bool:
        """One editor per device: while a job edits with another model, a preview waits for it to end (or is
        handed to a job with the same one). True when the preview thread should make it now."""
        while not (task.stop.is_set() or self._closing.is_set()):
            if self.jobs.running_engine() is None:
                return True
            if self._hand_to_job(task):
                return False
            time.sleep(0.2)
        return True

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None or self._closing.is_set():
                return
            if task.stop.is_set():
                self._failed(task, PreviewStopped("cancelled"))
                continue
            if simulated(task.config) and task.target is not None:  # a simulated editor of this one view
                from backend.editing.simulated import SimulatedInstructEditor

                self._run(task, SimulatedInstructEditor.from_images([task.image[..., :3]], [task.target[..., :3]]))
                continue
            if not self._wait_for_the_editor(task):
                continue
            editors = self.jobs.editors
            try:
                with editors.borrowed(task.editor_key, task.config) as editor:
                    # a job that starts meanwhile takes the editor over: this preview stops before its next DDIM
                    # step and goes to that job (editor None: the job took it first)
                    again = editor is None or self._run(task, editor, interrupt=editors.wanted)
            except Exception as error:  # e.g. weights missing: said to the client, the thread carries on
                self._failed(task, error)
                continue
            if again:
                time.sleep(0.05)  # the job is handing the editor over or back: let it
                self._queue.put(task)

    def _send(self, task: PreviewTask, event: m.InstructionPreviewEvent, pixels: np.ndarray | None = None) -> None:
        self.jobs.server.push(task.identity, event, [pixels.tobytes()] if pixels is not None else [])

    def _failed(self, task: PreviewTask, error: BaseException) -> None:
        self._release(task.preview_id)
        log.warning("instruction preview %s failed: %s", task.preview_id, error)
        self._send(task, m.InstructionPreviewEvent(preview_id=task.preview_id, kind="failed",
                                                   count=task.request.cells,
                                                   message=f"{type(error).__name__}: {error}"[:4000]))

    def _run(self, task: PreviewTask, editor: Any, interrupt: threading.Event | None = None) -> bool:
        """Edit the grid and send it; True when ``interrupt`` cut it short (the job it runs in is stopping, or a
        starting job wants the editor), and it is still to be made."""
        from backend.editing.preview_grid import LABEL_HEIGHT, cell_scale, edit_cells, grid_image

        request, started = task.request, time.monotonic()
        columns, rows = list(request.guidance_scales), list(request.image_guidance_scales)

        def on_cell(cell: Any) -> None:
            pixels = np.ascontiguousarray(cell.image)
            self._send(task, m.InstructionPreviewEvent(
                preview_id=task.preview_id, kind="cell", index=cell.index, count=request.cells,
                guidance_scale=cell.guidance_scale, image_guidance_scale=cell.image_guidance_scale,
                image=m.ImageInfo(dtype="uint8", shape=list(pixels.shape)), columns=columns, rows=rows,
                elapsed_s=time.monotonic() - started), pixels)

        # the editor is this thread's while borrowed (or the job's, between its steps): a stopping server
        # interrupts the edit between two DDIM steps (editors without the hook are fast: the simulated one)
        def stopped() -> bool:
            return self._closing.is_set() or task.stop.is_set() or (interrupt is not None and interrupt.is_set())

        previous_should_stop = getattr(editor, "should_stop", None)
        if previous_should_stop is not None:
            editor.should_stop = lambda: stopped() or previous_should_stop()
        try:
            cells = edit_cells(editor, task.image, request.instruction, columns, rows, ddim_steps=request.ddim_steps,
                               noise_level=request.noise_level, seed=request.seed, on_cell=on_cell,
                               should_stop=stopped)
            if len(cells) < request.cells:
                raise PreviewStopped("cancelled" if task.stop.is_set() else "the server is stopping")
            grid = np.ascontiguousarray(grid_image(cells, len(columns)))
        except Exception as error:
            if interrupt is not None and interrupt.is_set() and not (task.stop.is_set() or self._closing.is_set()):
                return True  # its job is stopping (the editor stopped before a DDIM step): made again later
            stopped_by = "cancelled" if task.stop.is_set() else "the server is stopping" if self._closing.is_set() else ""
            # the editor stopped between two DDIM steps: said as the cancel it is, not the editor's own exception
            self._failed(task, PreviewStopped(stopped_by) if stopped_by else error)
            return False
        finally:
            if previous_should_stop is not None:
                editor.should_stop = previous_should_stop
        self._release(task.preview_id)
        scale = cell_scale(task.image.shape[1])
        self._send(task, m.InstructionPreviewEvent(
            preview_id=task.preview_id, kind="grid", count=request.cells,
            image=m.ImageInfo(dtype="uint8", shape=list(grid.shape)), columns=columns, rows=rows,
            cell_width=task.image.shape[1] * scale, cell_height=task.image.shape[0] * scale + LABEL_HEIGHT,
            label_height=LABEL_HEIGHT, elapsed_s=time.monotonic() - started), grid)
        return False
