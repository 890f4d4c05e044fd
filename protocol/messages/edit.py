"""Starting, steering, cancelling and inspecting edit jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ValidationError
from ..schema import bounded, limit
from .registry import message
from .scene import Camera, check_id

MemoryMode = Literal["in2n", "in2n-small", "in2n-tiny"]
JobState = Literal["queued", "preparing", "reconstructing", "editing", "exporting", "done", "failed", "cancelled"]
"""Where a job is: the one vocabulary of the panel, the CLI, the server, the engine and ``state.json``."""
Phase = Literal["preparing", "reconstructing", "editing", "exporting"]
"""The states in which a job is working (its progress names one of them)."""
RUNNING_STATES: tuple[str, ...] = ("preparing", "reconstructing", "editing", "exporting")
FINAL_STATES: frozenset[str] = frozenset({"done", "failed", "cancelled"})
Output = Literal["mesh", "pointcloud", "images"]


@dataclass(frozen=True)
class Schedule:
    """When and how the Iterative Dataset Update edits training images (Instruct-NeRF2NeRF's knobs)."""

    reconstruction_steps: int = bounded(30000, ge=0, le=10_000_000)
    """nerfacto steps on the original images before editing starts."""
    total_steps: int = bounded(15000, ge=1, le=10_000_000)
    """Training steps of the editing phase."""
    edit_every_n_steps: int = bounded(10, ge=1)
    """Replace training images every n steps (in2n ``edit_rate``)."""
    images_per_edit: int = bounded(1, ge=1, le=10000)
    """How many images are edited each time (in2n ``edit_count``)."""
    t_min: float = bounded(0.02, ge=0, le=1)
    """Lower bound of the diffusion noise level drawn for each edit."""
    t_max: float = bounded(0.98, ge=0, le=1)
    ddim_steps: int = bounded(20, ge=1, le=1000)
    """Denoising steps per edit."""

    def validate(self, path: str) -> None:
        if self.t_min > self.t_max:
            raise ValidationError(f"t_min ({self.t_min}) > t_max ({self.t_max})", field=f"{path}.t_min")


@dataclass(frozen=True)
class SnapshotSettings:
    """NeRF snapshots the user can keep, import as geometry, or start a new edit from: the paper's "one must select
    an iteration at which to terminate". A snapshot is the NeRF's weights (never rotated away), renders of a few
    training views and the losses; one is always kept after reconstruction and one where the job ends or stops."""

    every_n_steps: int = bounded(1000, ge=0, le=10_000_000)
    """Keep a snapshot every n editing steps (0: only after reconstruction and at the end)."""
    views: int = bounded(4, ge=1, le=64)
    """Training views (spread over the dataset) each snapshot renders."""


Condition = Literal["original", "renders"]
"""The editor's image condition in a chained edit: the capture's photos (the paper's grounding) or the starting
snapshot's renders of every view (the new edit builds on the look of the previous one)."""


@dataclass(frozen=True)
class StartFrom:
    """Start a new edit from a NeRF snapshot of an earlier job (sequential edits: "make it autumn", then "add snow"):
    no reconstruction; the training images start as that NeRF's renders of every view."""

    job_id: str
    step: int | None = bounded(None, ge=0)
    """NeRF step of the snapshot (``nerf_snapshot_list_reply``); null: that job's newest snapshot."""
    condition: Condition = "original"

    def validate(self, path: str) -> None:
        check_id(self.job_id, f"{path}.job_id")


@dataclass(frozen=True)
class EditRegion:
    """Where the edit happens, in the scene's (input) frame: the selected objects' world-space bounds, a margin
    included. The exported geometry is cropped to it (protocol 2.0)."""

    bounds_min: list[float] = field(metadata=limit(min_len=3, max_len=3))
    bounds_max: list[float] = field(metadata=limit(min_len=3, max_len=3))

    def validate(self, path: str) -> None:
        if any(low > high for low, high in zip(self.bounds_min, self.bounds_max)):
            raise ValidationError(f"bounds_min {self.bounds_min} is above bounds_max {self.bounds_max}",
                                  field=f"{path}.bounds_min")


@dataclass(frozen=True)
class GeometrySettings:
    """The exported geometry (protocol 2.0)."""

    textured: bool = False
    """Also a UV-textured mesh (OBJ + MTL + PNG, xatlas unwrap, texture rendered from the NeRF), which renders like
    the NeRF in Eevee / Cycles."""
    max_faces: int = bounded(0, ge=0, le=100_000_000)
    """Decimate the mesh to at most this many triangles (0: as reconstructed)."""
    bake_resolution: int = bounded(1024, ge=64, le=8192)
    """Side in pixels of the texture baked onto each uploaded surface (``scene_begin_request.meshes``; protocol
    2.1)."""


@dataclass(frozen=True)
class Preset:
    """A named set of edit settings, the same for the panel, the CLI (``--preset``) and the server."""

    name: str
    description: str
    schedule: Schedule
    memory_mode: MemoryMode
    nerf_size: Literal["small", "full"]
    """``full``: nerfacto at its real settings; ``small``: a nerfacto small enough to train on a CPU in minutes."""
    editor_max_side: int
    """Longest side the editor works at."""
    export_points: int
    """Points of the exported cloud (the geometry export's ray budget follows it)."""


PRESETS: dict[str, Preset] = {
    "paper": Preset("paper", "the paper's schedule: full nerfacto, 30000 + 15000 steps, LPIPS (hours, on a GPU)",
                    Schedule(), "in2n", "full", 512, 1_000_000),
    "quick": Preset("quick", "a quick look on a CPU or a small GPU: a small nerfacto, 400 + 60 steps, no LPIPS "
                             "(minutes)",
                    Schedule(reconstruction_steps=400, total_steps=60, edit_every_n_steps=5, ddim_steps=10),
                    "in2n-tiny", "small", 256, 100_000),
}
"""The presets, by name."""


@dataclass(frozen=True)
class PreviewSettings:
    """Live previews: renders of the NeRF being edited, pushed as ``job_preview`` events."""

    enabled: bool = True
    max_rate_hz: float = bounded(1.0, gt=0, le=60)
    """At most this many previews per second (the server throttles)."""
    camera: Camera | None = None
    """Viewpoint to render; null: the scene's first camera. Can change any time via ``preview_settings_request``."""
    max_side: int = bounded(256, ge=8, le=4096)
    """Longest side of the preview in pixels (the camera's intrinsics are scaled to fit)."""


def check_job_id(value: str, path: str) -> None:
    check_id(value, path)


@message("edit_start_request", "request")
@dataclass(frozen=True)
class EditStartRequest:
    """Start (or queue) an edit of an uploaded scene. Resending the same msg_id never starts a second job."""

    scene_id: str
    """From ``scene_end_reply``."""
    instruction: str = field(metadata=limit(min_len=1, max_len=2000))
    """The editing instruction, e.g. "turn the bear into a polar bear"."""
    guidance_scale: float = bounded(7.5, ge=0, le=100)
    """Classifier-free guidance towards the instruction."""
    image_guidance_scale: float = bounded(1.5, ge=0, le=100)
    """Guidance towards the original image (higher: stay closer to it)."""
    schedule: Schedule = field(default_factory=Schedule)
    memory_mode: MemoryMode = "in2n"
    """``in2n`` fp32 + LPIPS, ``in2n-small`` fp16 + offload, ``in2n-tiny`` fp16 without LPIPS."""
    preview: PreviewSettings = field(default_factory=PreviewSettings)
    outputs: list[Output] = bounded(["mesh", "pointcloud", "images"], min_len=1, max_len=3)
    seed: int = bounded(0, ge=0, le=2**32 - 1)
    snapshots: SnapshotSettings = field(default_factory=SnapshotSettings)
    start_from: StartFrom | None = None
    use_depth: bool = True
    """Supervise the NeRF with the scene's depth images where every view has one (uploaded ``depth`` images)."""
    depth_while_editing: bool = True
    """Keep the depth loss on while editing, not only while reconstructing (a deviation from the paper): it pins the
    edited NeRF to the original scene's surfaces, which keeps appearance edits from growing floaters but holds back
    edits that change shape (protocol 2.2)."""
    edit_region: EditRegion | None = None
    """The selected objects' bounds: the geometry is exported inside them only."""
    geometry: GeometrySettings = field(default_factory=GeometrySettings)
    preset: str | None = bounded(None, max_len=64)
    """A ``PRESETS`` name: the server builds the NeRF and editor at that preset's size (the schedule is this
    request's own; a client sets it from the preset too)."""
    """Continue editing from an earlier job's snapshot (same scene) instead of reconstructing (protocol 2.0)."""
    engine_overrides: dict[str, Any] = bounded({})
    """Advanced: nested engine config values (e.g. ``{"nerf": {"rays_per_batch": 256}}``); unknown keys are
    reported by the server as a ValidationError naming them."""

    def validate(self, path: str) -> None:
        check_id(self.scene_id, f"{path}.scene_id")
        if not self.instruction.strip():
            raise ValidationError("must not be blank", field=f"{path}.instruction")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValidationError(f"no preset {self.preset!r} (presets: {', '.join(PRESETS)})", field=f"{path}.preset")


@message("edit_start_reply", "reply")
@dataclass(frozen=True)
class EditStartReply:
    job_id: str
    state: JobState
    queue_position: int | None = None
    """0 = running now, 1 = next, ...; null once the job has finished."""
    estimated_s: float | None = None
    """The server's estimate of the job's duration on its device, from its measured cost model."""


@message("preview_settings_request", "request")
@dataclass(frozen=True)
class PreviewSettingsRequest:
    """Change the preview camera / rate of a running or queued job at any time."""

    job_id: str
    preview: PreviewSettings

    def validate(self, path: str) -> None:
        check_job_id(self.job_id, f"{path}.job_id")


@message("preview_settings_reply", "reply")
@dataclass(frozen=True)
class PreviewSettingsReply:
    job_id: str


@message("cancel_request", "request")
@dataclass(frozen=True)
class CancelRequest:
    """Cancel a queued or running job, or (protocol 2.3) one of this client's 2D previews by its ``preview_id``;
    answered at once, never queued behind the job."""

    job_id: str

    def validate(self, path: str) -> None:
        check_job_id(self.job_id, f"{path}.job_id")


@message("cancel_reply", "reply")
@dataclass(frozen=True)
class CancelReply:
    job_id: str
    state: JobState
    """State after the request (a running job reports ``cancelled`` once it has actually stopped)."""


@dataclass(frozen=True)
class Progress:
    phase: Phase
    step: int = field(metadata=limit(ge=0))
    total_steps: int = field(metadata=limit(ge=0))
    fraction: float = bounded(0.0, ge=0, le=1)
    """Overall job progress 0..1 across phases."""
    eta_s: float | None = None
    elapsed_s: float = bounded(0.0, ge=0)
    losses: dict[str, float] = bounded({})
    """Latest training losses by name (finite numbers only)."""
    images_edited: int = bounded(0, ge=0)


@dataclass(frozen=True)
class ArtifactInfo:
    """A result file the client can fetch with ``result_fetch_request``."""

    name: str = field(metadata=limit(min_len=1, max_len=256))
    """Relative path inside the job's results, e.g. ``mesh.ply``, ``images/frame_00003.png``."""
    kind: Literal["mesh", "pointcloud", "image", "transforms", "other"]
    size: int = field(metadata=limit(ge=0))
    sha256: str = field(metadata=limit(min_len=64, max_len=64))
    media_type: str = "application/octet-stream"
    metadata: dict[str, Any] = bounded({})

    def validate(self, path: str) -> None:
        parts = self.name.split("/")
        if self.name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in self.name:
            raise ValidationError("must be a relative path without '.', '..' or empty parts", field=f"{path}.name")


@dataclass(frozen=True)
class JobSnapshot:
    """Everything a (re)connecting client needs to show a job (zguide "Clone": snapshot, then live events)."""

    job_id: str
    state: JobState
    scene_id: str
    instruction: str
    queue_position: int | None = None
    progress: Progress | None = None
    error_name: str | None = None
    error_message: str | None = None
    artifacts: list[ArtifactInfo] = field(default_factory=list)
    created: str = ""
    """ISO-8601 UTC."""
    last_preview_step: int | None = None


@message("job_snapshot_request", "request")
@dataclass(frozen=True)
class JobSnapshotRequest:
    job_id: str | None = None
    """A job, or null for all jobs the server knows."""
    subscribe: bool = True
    """Also push this job's (or all jobs') events to this client from now on."""
    resend_preview: bool = True
    """Push the latest preview image right after the reply."""


@message("job_snapshot_reply", "reply")
@dataclass(frozen=True)
class JobSnapshotReply:
    jobs: list[JobSnapshot] = field(default_factory=list)


@message("edit_estimate_request", "request")
@dataclass(frozen=True)
class EditEstimateRequest:
    """How long an edit would take on this server, checked by the server's own rules before anything is rendered or
    uploaded (a bad setting is a ValidationError naming it, under ``content.request``)."""

    request: EditStartRequest
    """The edit as it would be started (``scene_id`` may be a placeholder such as ``pending``)."""
    num_views: int = field(metadata=limit(ge=1, le=10000))
    width: int = field(metadata=limit(ge=1, le=65536))
    height: int = field(metadata=limit(ge=1, le=65536))


@message("edit_estimate_reply", "reply")
@dataclass(frozen=True)
class EditEstimateReply:
    estimated_s: float | None
    """Expected duration on this server's device (null while the device is still being probed)."""
    device: str = ""
    """The device the estimate is for, e.g. ``cuda``, ``cpu``."""
    reconstruction_s: float = 0.0
    editing_s: float = 0.0
    """NeRF steps of the editing phase."""
    edits_s: float = 0.0
    """Rendering and editing views."""
    edits: int = 0
    suggested_preset: str | None = None
    """A preset (``PRESETS``) that fits this device when the job as asked would take hours."""


@message("job_continue_request", "request")
@dataclass(frozen=True)
class JobContinueRequest:
    """Continue a stopped or finished job for ``extra_steps`` more editing steps (a stopped job first finishes the
    steps it had planned); it resumes from its newest checkpoint with its edited images."""

    job_id: str
    extra_steps: int = bounded(0, ge=0, le=10_000_000)

    def validate(self, path: str) -> None:
        check_job_id(self.job_id, f"{path}.job_id")


@message("job_continue_reply", "reply")
@dataclass(frozen=True)
class JobContinueReply:
    job_id: str
    state: JobState
    queue_position: int | None = None
    total_steps: int = 0
    """Editing steps the job now runs to."""
