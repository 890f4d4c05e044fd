"""The jobs directory: uploaded scenes written as nerfstudio scenes, and job records that survive a restart."""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import capture
from backend import atomic
from backend.pixels import to_uint8
from backend.surfaces import Surface, SurfaceError, checked_surface, write_surfaces
from protocol import ValidationError, ensure_private_dir
from protocol import messages as m
from protocol.messages.scene import MESH_CORNER_FLOATS
from protocol.schema import decode, encode

from .images import decode_image
from .migrate import migrate_stored_request

#: states in which a job still has work to do (re-queued when the server starts again)
UNFINISHED = ("queued", "preparing", "reconstructing", "editing", "exporting")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def frame_name(index: int) -> str:
    """File name of uploaded camera ``index`` in a stored scene (the index is recovered from it for results)."""
    return f"images/frame_{index:05d}.png"


def aux_name(role: str, index: int) -> str:
    """File name of camera ``index``'s auxiliary image of ``role`` (``targets/frame_00003.png``)."""
    return f"{m.AUX_FOLDERS[role]}/{Path(frame_name(index)).name}"


def camera_index_of(name: str) -> int | None:
    """Inverse of :func:`frame_name` for names like ``images/frame_00003.png``, and for the bare file names the
    job's history renders keep (``history/step-N/frame_00003.png``)."""
    stem = Path(name).stem
    if Path(name).parent.name in ("images", "") and stem.startswith("frame_") and stem[6:].isdigit():
        return int(stem[6:])
    return None


@dataclass
class JobRecord:
    """What the server knows about a job, persisted as ``jobs/<job_id>/record.json``."""

    job_id: str
    scene_id: str
    request: dict[str, Any]
    """The ``edit_start_request`` content as sent (encoded)."""
    state: str = "queued"
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    error_name: str | None = None
    error_message: str | None = None
    message: str = ""
    start_checkpoint: str = ""
    """A chained edit's starting snapshot (its weights' path), resolved when the job was submitted."""

    def edit_request(self) -> m.EditStartRequest:
        request = decode(m.EditStartRequest, self.request)
        assert isinstance(request, m.EditStartRequest)
        return request


class JobStoreError(RuntimeError):
    """A file of the jobs directory could not be written (disk full, permissions): names the path and errno."""


class JobStore:
    """Files under the jobs directory. Writes are atomic; records are read back at start-up."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.scenes = self.root / "scenes"
        self.jobs = self.root / "jobs"
        self._lock = threading.Lock()
        self._decoding = threading.Lock()
        """One uploaded image is decoded at a time, whichever upload it belongs to: parallel uploads of small files
        declaring 8,192 px took the server from 39 MB to 2.3 GB when each decoded its own."""
        for folder in (self.root, self.scenes, self.jobs):
            ensure_private_dir(folder)  # scenes and results are the user's own: 0700, never another user's folder

    # ------------------------------------------------------------------ scenes
    def scene_dir(self, scene_id: str) -> Path:
        return self.scenes / scene_id

    def has_scene(self, scene_id: str) -> bool:
        return (self.scene_dir(scene_id) / "transforms.json").is_file()

    def write_scene(self, begin: m.SceneBeginRequest, buffers: list[Any]) -> str:
        """Write an uploaded scene as ``transforms.json`` + PNGs; returns its id. The transforms file comes last,
        so a scene without it is an interrupted write (never used)."""
        scene_id = new_id("scene")
        folder = self.scene_dir(scene_id)
        try:
            self._write_scene_files(folder, begin, buffers)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # a failed write (disk full) leaves no partial scene
            raise
        return scene_id

    def _write_scene_files(self, folder: Path, begin: m.SceneBeginRequest, buffers: list[Any]) -> None:
        frames = []
        for index, (camera, info, buffer) in enumerate(zip(begin.cameras, begin.images, buffers)):
            with self._decoding:
                pixels = decode_image(info, buffer, f"images[{index}]")
                atomic.write_png(folder / frame_name(index), to_uint8_rgb(pixels), compress_level=1)  # speed
                del pixels
            intrinsics = capture.Intrinsics(camera.fl_x, camera.fl_y, camera.cx, camera.cy, camera.w, camera.h)
            frames.append(capture.CaptureFrame(frame_name(index), intrinsics, camera.transform_matrix,
                                               {"camera_name": camera.name}))
        for index, (aux, buffer) in enumerate(zip(begin.aux_images, buffers[len(begin.images):])):
            name = aux_name(aux.role, aux.camera_index)
            with self._decoding:
                pixels = decode_image(aux.image, buffer, f"aux_images[{index}].image")
                if aux.role == "depth" and pixels.dtype == np.uint8:  # would be stored as zeros: no depth at all
                    raise ValidationError(f"camera {aux.camera_index}'s depth is an 8-bit {aux.image.encoding} file; "
                                          "depth is float32 metres (raw) or a 16-bit PNG of millimetres",
                                          field=f"content.aux_images[{index}].image")
                atomic.write_png(folder / name, aux_pixels(aux.role, pixels), compress_level=1)
                del pixels
            frames[aux.camera_index].extra[m.AUX_FRAME_KEYS[aux.role]] = name
        first_mesh = len(begin.all_images)
        write_surfaces(folder, [uploaded_surface(mesh, buffer, f"meshes[{index}]") for index, (mesh, buffer)
                                in enumerate(zip(begin.meshes, buffers[first_mesh:]))])
        atomic.write_json(folder / "scene.json", {"scene_name": begin.scene_name, "metadata": begin.metadata,
                                                  "upload_id": begin.upload_id})
        capture.write_transforms(folder / "transforms.json", capture.Capture(frames))  # last: marks a complete scene

    def remove_interrupted_scenes(self) -> list[Path]:
        """Scene folders without transforms.json (written last) are writes a crash interrupted: removed."""
        removed = [folder for folder in self.scenes.iterdir()
                   if folder.is_dir() and not (folder / "transforms.json").is_file()]
        for folder in removed:
            shutil.rmtree(folder, ignore_errors=True)
        return removed

    def cameras(self, scene_id: str) -> list[m.Camera]:
        frames = capture.read_transforms(self.scene_dir(scene_id)).frames
        return [m.Camera(fl_x=f.intrinsics.fl_x, fl_y=f.intrinsics.fl_y, cx=f.intrinsics.cx, cy=f.intrinsics.cy,
                         w=f.intrinsics.w, h=f.intrinsics.h, transform_matrix=f.transform_matrix,
                         name=str(f.extra.get("camera_name", ""))) for f in frames]

    # ------------------------------------------------------------------ jobs
    def job_dir(self, job_id: str) -> Path:
        return self.jobs / job_id

    def work_dir(self, job_id: str) -> Path:
        """The engine's job directory."""
        return self.job_dir(job_id) / "work"

    def save(self, record: JobRecord) -> None:
        """Write the record atomically; :class:`JobStoreError` names the file and the system's reason."""
        path = self.job_dir(record.job_id) / "record.json"
        with self._lock:
            try:
                atomic.write_json(path, asdict(record))
            except OSError as error:
                raise JobStoreError(f"could not write {path}: {error.strerror or error} (errno {error.errno})"
                                    ) from error

    def load_all(self) -> list[JobRecord]:
        """Every job record, oldest first. A job folder whose record.json is damaged is listed as a failed job
        saying why (it does not vanish); folders that are not jobs at all are left alone."""
        records = []
        for path in self.jobs.glob("*/record.json"):
            try:
                record = JobRecord(**json.loads(path.read_text()))
                record.request = migrate_stored_request(record.request)  # a job folder of an earlier release
                records.append(record)
            except (OSError, ValueError, TypeError) as error:
                job_id = path.parent.name
                if not job_id.startswith("job-"):
                    continue  # not a folder this server made
                records.append(JobRecord(job_id=job_id, scene_id="unknown", request={}, state="failed",
                                         error_name="DamagedRecord",
                                         error_message=f"{path} is unreadable ({type(error).__name__}: "
                                                       f"{str(error)[:200]}); the job cannot be resumed",
                                         created=datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
                                         if path.exists() else ""))
        return sorted(records, key=lambda record: record.created)

    @staticmethod
    def encode_request(request: m.EditStartRequest) -> dict[str, Any]:
        encoded = encode(request)
        assert isinstance(encoded, dict)
        return encoded


def uploaded_surface(mesh: m.SurfaceMesh, buffer: Any, field: str) -> Surface:
    """An uploaded mesh's bytes as a :class:`Surface`, checked (finite, some area, UVs with area): a
    ValidationError naming the object otherwise."""
    corners = np.frombuffer(memoryview(buffer).cast("B"), dtype="<f4").reshape(mesh.triangles, 3, MESH_CORNER_FLOATS)
    try:
        return checked_surface(mesh.name, mesh.object_name, corners, field)
    except SurfaceError as error:
        raise ValidationError(error.problem, field=f"content.{field}") from None


def aux_pixels(role: str, pixels: np.ndarray) -> np.ndarray:
    """An auxiliary image as it is stored: a target as RGB, a depth image as nerfstudio reads one (16-bit PNG of
    millimetres, 0 where unknown: beyond 65.5 m, negative or not finite), an edit mask as 0 / 255."""
    if role == "depth":
        if pixels.dtype == np.uint16:
            return np.ascontiguousarray(pixels.reshape(pixels.shape[:2]))
        metres = np.nan_to_num(pixels.reshape(pixels.shape[:2]).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        millimetres = np.rint(metres / m.DEPTH_UNIT_SCALE)
        millimetres[(millimetres <= 0) | (millimetres > 65535)] = 0
        return millimetres.astype(np.uint16)
    if role == "edit_mask":
        return np.where(pixels.reshape(pixels.shape[:2]) > 127, 255, 0).astype(np.uint8)
    return to_uint8_rgb(pixels)[..., :3]


def to_uint8_rgb(pixels: np.ndarray) -> np.ndarray:
    """Uploaded pixels as ``H W 3`` (or ``H W 4`` with real transparency) uint8 for a PNG nerfstudio reads."""
    if pixels.dtype == np.uint16:
        pixels = (pixels.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    elif pixels.dtype != np.uint8:  # float16 / float32 in [0, 1]
        pixels = to_uint8(pixels)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    if pixels.shape[2] == 4 and bool((pixels[..., 3] == 255).all()):
        pixels = pixels[..., :3]  # opaque: RGBA would only make nerfstudio composite over a random background
    return np.ascontiguousarray(pixels)
