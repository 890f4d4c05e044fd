"""Configuration of an edit job: the NeRF (nerfacto), Iterative Dataset Update, the editor, and the outputs.

Defaults follow the Instruct-NeRF2NeRF paper and its reference implementation (``in2n`` method on nerfstudio):
edit one view every 10 NeRF steps, noise level drawn from [0.02, 0.98], 20 DDIM steps, guidance 7.5 / 1.5, L1 + LPIPS
on 32x32 patches, 16384 rays per batch. Tests and CPU runs shrink the NeRF through :func:`tiny_nerf_config`.

Every config is a plain dataclass that round-trips through JSON (``to_dict`` / ``from_dict``), because the job
directory stores the config it ran with and a resumed run must use the same one.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from protocol import ValidationError
from protocol import messages as m
from protocol.messages import MemoryMode
from protocol.schema import bounded, check_bounds

# The edit settings' defaults are defined once, by the protocol (the panel, the CLI and the server all use them).
_SCHEDULE = m.Schedule()
_SNAPSHOTS = m.SnapshotSettings()
_REQUEST: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(m.EditStartRequest)}


EXACT_DEPTH_LOSS_MULT = 0.05
"""Depth weight of jobs whose depth a renderer computed exactly (Blender's z pass, uploaded by the add-on): 50x
depth-nerfacto's default, which is made for noisy sensor depth. On the scene set (benchmarks/RESULTS.md) the quick
preset's small NeRF stayed transparent or incomplete with the default weight (the cause of "nothing comes back" on
new scenes) and reached the geometry bar in more scenes with this one."""
EXACT_DEPTH_SIGMA = 1e-4
"""The DS-NeRF window of exact depth at the end of the reconstruction (a variance: +-0.01 of the camera rig's size)."""
EXACT_DEPTH_SIGMA_START = 0.01
"""... narrowed from depth-nerfacto's window, so that samples far from the surface are pulled to it first."""


@dataclass
class NerfConfig:
    """The nerfacto model, its data sampling and optimisation."""

    reconstruction_steps: int = bounded(_SCHEDULE.reconstruction_steps, ge=0, le=10_000_000)
    """NeRF steps spent reconstructing the *original* scene before editing starts, when the job has no trained
    checkpoint (nerfacto's default training length). 0 starts editing from an untrained NeRF."""
    rays_per_batch: int = bounded(16384, ge=1, le=1 << 22)
    """Rays per NeRF step, sampled from all views (edited and not yet edited) in ``patch_size`` squares."""
    patch_size: int = bounded(32, ge=1, le=256)
    """Side of the square pixel patches rays are sampled in; LPIPS compares whole patches (in2n uses 32; AlexNet needs
    at least 32). 1 samples independent pixels (used when LPIPS is off)."""
    use_lpips: bool = True
    """Add the LPIPS patch loss (in2n). Needs torchvision's pretrained AlexNet weights (downloaded once)."""
    lpips_loss_mult: float = bounded(1.0, ge=0, le=1000)
    """Weight of the LPIPS loss."""
    use_l1: bool = True
    """L1 photometric loss as in in2n (nerfacto's own is MSE)."""
    use_depth: bool = _REQUEST["use_depth"]
    """Supervise with the scene's depth images when every view has one (nerfstudio's depth-nerfacto loss)."""
    depth_while_editing: bool = _REQUEST["depth_while_editing"]
    """Keep the depth loss in the editing phase too (off: depth supervises the reconstruction only)."""
    depth_loss_mult: float = bounded(1e-3, ge=0, le=1000)
    """Weight of the depth loss (depth-nerfacto's default, for sensor depth; jobs given Blender's exact depth use
    :data:`EXACT_DEPTH_LOSS_MULT`)."""
    depth_sigma: float = bounded(0.01, gt=0, le=10)
    """Variance of the window around each depth in which depth-nerfacto's DS-NeRF loss rewards density, in the
    NeRF's units (nerfstudio divides by ``2 * sigma``: 0.01 is a window of about +-0.1, a tenth of the camera rig's
    size; sensor depth needs it, a renderer's exact depth pins surfaces with :data:`EXACT_DEPTH_SIGMA`)."""
    depth_sigma_start: float = bounded(0.0, ge=0, le=10)
    """The window's variance at step 0, narrowed geometrically to ``depth_sigma`` over ``depth_sigma_steps`` (0: no
    narrowing): a wide window gives samples far from the surface a gradient towards it, a narrow one alone has none
    there."""
    depth_sigma_steps: int = bounded(0, ge=0, le=10_000_000)
    """NeRF steps over which the window narrows (0: the reconstruction's steps)."""
    focus_fraction: float = bounded(0.0, ge=0, le=0.9)
    """Share of each batch's rays drawn from inside the views' edit masks (the selected objects), whatever part of
    the view those cover: an object filling 2 % of its views otherwise gets 2 % of the rays. Single-pixel batches
    only (LPIPS patches sample uniformly); 0: uniform (the default until the scene set shows it helps: RESULTS.md)."""
    hidden_dim: int = bounded(64, ge=1, le=4096)
    """Width of nerfacto's MLPs."""
    num_levels: int = bounded(16, ge=1, le=64)
    """Levels of the hash grid."""
    max_res: int = bounded(2048, ge=1, le=1 << 16)
    """Finest hash grid resolution."""
    log2_hashmap_size: int = bounded(19, ge=1, le=26)
    """log2 of the hash table size per level."""
    proposal_log2_hashmap_size: int = bounded(17, ge=1, le=26)
    """log2 of the hash table size of the proposal networks."""
    num_proposal_samples_per_ray: tuple[int, ...] = bounded((256, 96), ge=1, le=4096, min_len=1, max_len=8)
    """Samples per ray for each of the two proposal networks."""
    num_nerf_samples_per_ray: int = bounded(48, ge=1, le=4096)
    """Samples per ray for the NeRF field."""
    background_color: Literal["last_sample", "random", "black", "white"] = "last_sample"
    """nerfacto's background model. ``random`` (nerfstudio's remedy for see-through reconstructions) makes every
    training ray opaque; it helps small NeRFs on renders of a few objects over a plain background, which
    ``last_sample`` may explain with semi-transparent density and then nothing is opaque enough to export."""
    average_init_density: float = bounded(0.01, gt=0, le=1000)
    """Initial density of the field (nerfacto's method config uses 0.01; higher makes surfaces appear sooner)."""
    camera_optimizer: Literal["off", "SO3xR3"] = "SO3xR3"
    """Refine camera poses while training (nerfacto and in2n default)."""
    eval_num_rays_per_chunk: int = bounded(1 << 15, ge=1, le=1 << 22)
    """Rays rendered at once when rendering whole images (edits, previews, history)."""
    implementation: Literal["auto", "tcnn", "torch"] = "auto"
    """Hash grid implementation: ``auto`` uses tiny-cuda-nn on CUDA when installed, nerfstudio's torch code otherwise."""
    mixed_precision: bool = True
    """Autocast the NeRF step on CUDA (as nerfstudio's trainer does); ignored on the CPU."""
    lr: float = bounded(1e-2, gt=0, le=10)
    """Adam learning rate of the field and proposal networks (nerfacto)."""
    seed: int = bounded(0, ge=0, le=2**32 - 1)
    """Seed for ray sampling and initialisation."""


@dataclass
class DatasetUpdateConfig:
    """Iterative Dataset Update: which view is edited when, and how strongly."""

    total_steps: int = bounded(_SCHEDULE.total_steps, ge=0, le=10_000_000)
    """NeRF steps of the editing phase (in2n's ``max_num_iterations``)."""
    edit_every_n_steps: int = bounded(_SCHEDULE.edit_every_n_steps, ge=1, le=10_000_000)
    """Edit dataset images every this many NeRF steps (in2n ``edit_rate``)."""
    images_per_edit: int = bounded(_SCHEDULE.images_per_edit, ge=1, le=10000)
    """How many views are edited each time (in2n ``edit_count``)."""
    t_min: float = bounded(_SCHEDULE.t_min, ge=0, le=1)
    """Lower bound of the noise level, as a fraction of the diffusion schedule."""
    t_max: float = bounded(_SCHEDULE.t_max, ge=0, le=1)
    """Upper bound of the noise level, as a fraction of the diffusion schedule."""
    ddim_steps: int = bounded(_SCHEDULE.ddim_steps, ge=1, le=1000)
    """DDIM steps s per edit (UNet calls), spread between the drawn noise level T and 0 (the paper's schedule)."""
    guidance_scale: float = bounded(_REQUEST["guidance_scale"], ge=0, le=100)
    """Text classifier-free guidance weight."""
    image_guidance_scale: float = bounded(_REQUEST["image_guidance_scale"], ge=0, le=100)
    """Image (original view) classifier-free guidance weight."""
    seed: int = bounded(0, ge=0, le=2**32 - 1)
    """Seed of the view order and noise draws; a resumed job continues the same sequence."""
    mask_dilation_px: int = bounded(2, ge=0, le=256)
    """With an edit mask: it is grown by this many pixels before edited pixels are kept (IP2P spills a little)."""
    mask_feather_px: int = bounded(3, ge=0, le=256)
    """Then softened over this many pixels, so the edit blends into the original image."""
    crop_to_mask: bool = True
    """With an edit mask: the editor works on a crop around it (at its full working size) when the mask covers
    less than half of the view, so a small object gets the editor's full resolution."""


@dataclass
class EditorConfig:
    """Where the InstructPix2Pix editor comes from and how it is run."""

    source: str = bounded("timbrooks/instruct-pix2pix", min_len=1, max_len=4096)
    """``tiny`` (random tiny model, tests), ``full-random`` (full size, random weights, benchmarks), a Hugging Face
    model id, or a local diffusers folder."""
    device: str | None = bounded(None, min_len=1, max_len=32)
    """Device of the editor; None uses the NeRF's device."""
    max_side: int = bounded(512, ge=8, le=4096)
    """Longest side the editor works at (images are resized there and back)."""


@dataclass
class OutputConfig:
    """What the job writes besides the edited images."""

    checkpoint_every: int = bounded(250, ge=1, le=1_000_000_000)
    """Write a nerfstudio checkpoint every this many steps (and when the job stops)."""
    keep_checkpoints: int = bounded(2, ge=1, le=1000)
    """How many recent checkpoints to keep."""
    snapshot_every: int = bounded(_SNAPSHOTS.every_n_steps, ge=0, le=10_000_000)
    """Keep a NeRF snapshot (weights, renders of the snapshot views, losses) every this many editing steps; one is
    always kept after reconstruction and where the job ends or stops (0: only those)."""
    snapshot_views: int = bounded(_SNAPSHOTS.views, ge=1, le=1000)
    """How many training views (spread over the dataset) each snapshot renders."""
    max_snapshots: int = bounded(20, ge=2, le=100_000)
    """Snapshots a job keeps: beyond it, the oldest scheduled ones are rotated away (the reconstruction, final and
    stopped snapshots, the newest, and any another job starts from or is being exported are always kept)."""
    max_snapshot_bytes: int = bounded(20 * 1024**3, ge=1, le=2**50)
    """... and the disk space they may take together, rotated the same way (every_n_steps = 1 filled a disk)."""
    export_geometry: bool = True
    """Export the point cloud and mesh when the job ends (off: edited images, checkpoints and snapshots only, e.g.
    for benchmarks that score images; the manifest then lists no geometry)."""
    export_num_points: int = bounded(1_000_000, ge=1, le=100_000_000)
    """Points of the exported cloud (nerfstudio's default), at most 16 per training pixel; up to 4 rays a point are
    shot, rays ending on low-opacity content are dropped."""
    export_remove_outliers: bool = True
    """Drop statistical outliers from the point cloud (nerfstudio's exporter default)."""
    mesh_method: Literal["tsdf", "poisson"] = "poisson"
    """How the mesh is made: ``poisson`` closes a surface over the point cloud (``ns-export poisson``), ``tsdf``
    fuses the NeRF's rendered depth from the training views inside the export region (``ns-export tsdf``; keeps
    only what the views saw). Poisson stays the default until TSDF measures better (benchmarks/RESULTS.md)."""
    tsdf_resolution: int = bounded(192, ge=16, le=1024)
    """Voxels along the longest side of the export region for the ``tsdf`` mesh."""
    poisson_depth: int = bounded(9, ge=1, le=14)
    """Octree depth of the Poisson surface reconstruction of the mesh."""
    mesh_format: Literal["ply", "obj"] = "ply"
    """Mesh file format; both carry per-vertex colours."""
    max_faces: int = bounded(0, ge=0, le=100_000_000)
    """Decimate the mesh to at most this many triangles (open3d's quadric decimation; 0: as reconstructed)."""
    textured_mesh: bool = False
    """Also a UV-textured mesh (nerfstudio's texture export: xatlas unwrap, texture rendered from the NeRF), OBJ +
    MTL + PNG in the input frame."""
    texture_size: int = bounded(1024, ge=64, le=8192)
    """Side of the texture image in pixels."""
    bake_resolution: int = bounded(1024, ge=64, le=8192)
    """Side in pixels of the texture baked onto each of the scene's surfaces (the user's selected objects, when the
    scene has them): the NeRF's renders projected onto them from the training cameras."""
    region_min: list[float] | None = None
    """With ``region_max``: export only inside this box of the input frame (the selected objects' bounds)."""
    region_max: list[float] | None = None
    crop_to_scene_box: bool = True
    """Drop exported points outside the cameras' region (nerfstudio's [-1, 1] box), i.e. the far background."""


@dataclass
class StartConfig:
    """Where the NeRF starts: a reconstruction of the capture, or a trained NeRF of it."""

    checkpoint: str = bounded("", max_len=4096)
    """A trained nerfacto checkpoint of this scene (same nerfacto settings, e.g. an earlier job's snapshot): no
    reconstruction. Empty: reconstruct the capture first."""
    dataset: Literal["original", "renders"] = "original"
    """The training images editing starts from: the capture's photos, or the checkpoint's renders of every view (a
    chained edit: its NeRF already shows the previous edit, which the photos would pull it back from)."""
    condition: m.Condition = "original"
    """The editor's image condition: the capture's photos (the paper's grounding) or the checkpoint's renders."""


@dataclass
class EditJobConfig:
    """Everything one edit job needs apart from the scene and the job directory."""

    prompt: str = bounded("", max_len=2000)
    """The editing instruction, e.g. "turn the bear into a polar bear"."""
    memory_mode: MemoryMode = _REQUEST["memory_mode"]
    """Like the reference's methods: ``in2n`` fp32 editor + LPIPS; ``in2n-small`` fp16 editor with CPU offload +
    LPIPS; ``in2n-tiny`` fp16 editor without LPIPS (and pixel instead of patch sampling)."""
    device: str = bounded("auto", min_len=1, max_len=32)
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``..."""
    nerf: NerfConfig = field(default_factory=NerfConfig)
    """NeRF settings."""
    update: DatasetUpdateConfig = field(default_factory=DatasetUpdateConfig)
    """Iterative Dataset Update settings."""
    editor: EditorConfig = field(default_factory=EditorConfig)
    """Editor settings."""
    output: OutputConfig = field(default_factory=OutputConfig)
    """Output settings."""
    start: StartConfig = field(default_factory=StartConfig)
    """Where the NeRF starts."""

    def effective_use_lpips(self) -> bool:
        """LPIPS is on unless switched off or the memory mode drops it (``in2n-tiny``)."""
        return self.nerf.use_lpips and self.memory_mode != "in2n-tiny"

    def effective_patch_size(self) -> int:
        """Patches only matter for LPIPS; without it independent pixels sample the images better."""
        return self.nerf.patch_size if self.effective_use_lpips() else 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EditJobConfig:
        return _from_dict(cls, data)


def tiny_nerf_config(**overrides: Any) -> NerfConfig:
    """A nerfacto small enough to train on two CPU cores in seconds (tests, CPU benchmarks): few rays, small grid."""
    values: dict[str, Any] = dict(
        reconstruction_steps=100, rays_per_batch=256, patch_size=1, use_lpips=False, hidden_dim=16, num_levels=4,
        max_res=64, log2_hashmap_size=12, proposal_log2_hashmap_size=10, num_proposal_samples_per_ray=(32, 16),
        num_nerf_samples_per_ray=16, camera_optimizer="off", eval_num_rays_per_chunk=4096, implementation="torch",
        # nerfacto's 0.01 lets a network this small explain a few views of objects over a plain background with its
        # last sample alone (a skybox: nothing opaque to export); 0.05 makes surfaces form first. Even so, some view
        # counts of the test scenes (6, 8, 12 at 32 px) still end that way: tests use 10 (a random background would
        # avoid it, but then the plain background becomes geometry around the objects).
        average_init_density=0.05,
    )
    values.update(overrides)
    return NerfConfig(**values)


def preset_nerf(preset: m.Preset | None, *, use_lpips: bool = True) -> NerfConfig:
    """The NeRF of a preset: nerfacto at its real size, or (``small``) one that trains on a CPU in minutes."""
    if preset is not None and preset.nerf_size == "small":
        # LPIPS needs 32x32 patches; the small NeRF samples single pixels only without it
        return tiny_nerf_config(use_lpips=use_lpips, patch_size=32 if use_lpips else 1)
    return NerfConfig(use_lpips=use_lpips)


T = TypeVar("T")

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d{1,2})?")
"""Devices a job may name (torch device strings)."""


def validate_config(config: Any, path: str = "config") -> None:
    """Check every field of a (nested) config against its type and the bounds its ``bounded(...)`` declares, plus the
    rules that tie fields together; raise :class:`protocol.ValidationError` naming the first bad field (e.g.
    ``content.engine_overrides.output.checkpoint_every``). Used wherever a config comes from outside: the server's
    requests, the CLI's options, a stored config.json."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, where = getattr(config, f.name), f"{path}.{f.name}"
        if dataclasses.is_dataclass(value):
            validate_config(value, where)
            continue
        _check_type(hints[f.name], value, where)
        if isinstance(value, tuple):  # a list's length, then each of its numbers, against the field's bounds
            check_bounds(list(value), f.metadata, where)
            for index, item in enumerate(value):
                check_bounds(item, f.metadata, f"{where}[{index}]")
        else:
            check_bounds(value, f.metadata, where)
    if isinstance(config, DatasetUpdateConfig) and config.t_min > config.t_max:
        raise ValidationError(f"t_min ({config.t_min}) is above t_max ({config.t_max})", field=f"{path}.t_min")
    if isinstance(config, OutputConfig):
        _check_region(config, path)
    device = getattr(config, "device", None)  # EditJobConfig.device and EditorConfig.device
    if isinstance(device, str) and not DEVICE_PATTERN.fullmatch(device):
        raise ValidationError(f"must be auto, cpu, mps, cuda or cuda:N, got {device[:40]!r}", field=f"{path}.device")


def _check_region(config: OutputConfig, path: str) -> None:
    corners = (config.region_min, config.region_max)
    if corners == (None, None):
        return
    for name, corner in zip(("region_min", "region_max"), corners):
        if not isinstance(corner, (list, tuple)) or len(corner) != 3 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in corner):
            raise ValidationError("must be 3 finite numbers (with region_min and region_max both given)",
                                  field=f"{path}.{name}")
    assert config.region_min is not None and config.region_max is not None
    if any(low > high for low, high in zip(config.region_min, config.region_max)):
        raise ValidationError(f"{config.region_min} is above region_max {config.region_max}",
                              field=f"{path}.region_min")


def _check_type(hint: Any, value: Any, path: str) -> None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None and type(None) in args:
        return
    if origin is Literal:
        if value not in args:
            raise ValidationError(f"must be one of {list(args)}, got {str(value)[:60]!r}", field=path)
        return
    if origin is tuple:
        if not isinstance(value, tuple) or not value:
            raise ValidationError("must be a non-empty list", field=path)
        for index, item in enumerate(value):
            _check_type(args[0], item, f"{path}[{index}]")
            if isinstance(item, int) and item < 1:
                raise ValidationError(f"must be >= 1, got {item}", field=f"{path}[{index}]")
        return
    expected = next((a for a in args if a is not type(None)), hint) if args else hint
    if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValidationError(f"must be finite, got {value}", field=path)
        return
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValidationError(f"must be an integer, got {type(value).__name__}", field=path)
    if expected in (str, bool) and not isinstance(value, expected):
        raise ValidationError(f"must be a {expected.__name__}, got {type(value).__name__}", field=path)


#: Names config.json files of earlier versions used for fields (read, never written).
RENAMED_FIELDS: dict[type, dict[str, str]] = {
    DatasetUpdateConfig: {"edit_steps": "total_steps", "edit_rate": "edit_every_n_steps",
                          "edit_count": "images_per_edit", "diffusion_steps": "ddim_steps"},
    OutputConfig: {"history_every": "snapshot_every", "history_views": "snapshot_views"},
}


def current_names(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """``data``'s keys for ``cls`` under their current names (:data:`RENAMED_FIELDS`; one level); where an old and a
    current name are both given, the current one wins."""
    renamed = RENAMED_FIELDS.get(cls, {})
    return {renamed.get(key, key): value for key, value in data.items()
            if not (key in renamed and renamed[key] in data)}


def _from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a (nested) config dataclass from a dict, rejecting unknown keys with their name."""
    data = current_names(cls, data)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    defaults = cls()
    for name, value in data.items():
        current = getattr(defaults, name)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            values[name] = _from_dict(type(current), value)
        elif isinstance(current, tuple) and isinstance(value, list):
            values[name] = tuple(value)
        else:
            values[name] = value
    return cls(**values)
