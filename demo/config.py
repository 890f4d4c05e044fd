"""The demo's settings: the scene and its views, the edit schedule, and what is written to the output folder.

Two presets: ``cpu`` (the tiny editor and a tiny nerfacto, small renders: a few minutes on a 2-core CPU) and
``paper`` (real InstructPix2Pix on a GPU with the paper's schedule and the full nerfacto). Any field can be
overridden from the command line.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The engine's tiny CPU NeRF (``backend.config.tiny_nerf_config``) with a slightly larger grid and more rays, so a
#: 96 px scene reconstructs into recognisable geometry in a few hundred steps.
CPU_NERF = {
    "rays_per_batch": 512, "patch_size": 1, "use_lpips": False, "hidden_dim": 16, "num_levels": 8, "max_res": 128,
    "log2_hashmap_size": 14, "proposal_log2_hashmap_size": 11, "num_proposal_samples_per_ray": [32, 16],
    "num_nerf_samples_per_ray": 24, "camera_optimizer": "off", "eval_num_rays_per_chunk": 8192,
    "implementation": "torch", "average_init_density": 0.05,
}


@dataclass
class Preset:
    """A consistent set of defaults for one kind of machine."""

    name: str
    views: int
    """Training cameras (orbit around the objects, two elevations)."""
    size: int
    """Side of the square training renders in pixels."""
    samples: int
    """Cycles samples of the training renders."""
    reconstruction_steps: int
    """nerfacto steps on the original renders before editing."""
    total_steps: int
    """NeRF steps of Iterative Dataset Update."""
    edit_every_n_steps: int
    """Edit one view every this many NeRF steps (the paper: 10)."""
    ddim_steps: int
    """Diffusion steps of the full schedule per edit (the paper: 20)."""
    memory_mode: str
    """``in2n`` (fp32 editor + LPIPS) | ``in2n-small`` | ``in2n-tiny`` (no LPIPS)."""
    engine_overrides: dict[str, Any] = field(default_factory=dict)
    """Backend engine settings (``EditJobConfig`` fields) sent with the edit request."""


CPU = Preset(
    name="cpu", views=10, size=96, samples=16, reconstruction_steps=400, total_steps=300, edit_every_n_steps=10,
    ddim_steps=4, memory_mode="in2n-tiny",
    # snapshot_every beyond the job's length: only the final NeRF renders (every view), for the contact sheet
    engine_overrides={"device": "cpu", "nerf": CPU_NERF,
                      "output": {"checkpoint_every": 100000, "snapshot_every": 1_000_000, "export_num_points": 20000,
                                 "poisson_depth": 6}},
)
PAPER = Preset(
    name="paper", views=12, size=512, samples=32, reconstruction_steps=30000, total_steps=15000, edit_every_n_steps=10,
    ddim_steps=20, memory_mode="in2n", engine_overrides={"device": "auto", "output": {"snapshot_every": 1000}},
)
PRESETS = {preset.name: preset for preset in (CPU, PAPER)}


@dataclass
class DemoConfig:
    """Everything one demo run needs (command-line options map onto these fields)."""

    out_dir: Path = Path("demo_out")
    """Output folder (created; earlier outputs in it are replaced)."""
    instruction: str = "make the yellow sphere look like it is made of blue glass"
    """The edit instruction typed into the panel."""
    editor: str | None = None
    """``tiny``, a local diffusers InstructPix2Pix folder, or None: the Hugging Face cache if it has the weights,
    else ``tiny``."""
    preset: str = "auto"
    """``cpu`` | ``paper`` | ``auto`` (``paper`` with real weights on a GPU backend, else ``cpu``)."""
    views: int | None = None
    """Override of the preset's number of training views."""
    size: int | None = None
    """Override of the preset's render size (pixels, square)."""
    samples: int | None = None
    """Override of the preset's Cycles samples."""
    reconstruction_steps: int | None = None
    """Override of the preset's reconstruction steps."""
    total_steps: int | None = None
    """Override of the preset's Iterative DU steps."""
    simulated_object: str = "Sphere"
    """The object the instruction is about: the simulated editor's targets show it as blue glass (the default
    instruction's meaning), and "selected objects only" edits it alone."""
    scope: str = "selected"
    """``selected``: the add-on's "selected objects only" (the sphere is selected; its mask keeps the edit on it, the
    geometry comes back inside its bounds and replaces it in the scene); ``scene``: the whole scene is edited and
    comes back as one mesh."""
    sheet_views: int = 4
    """Views shown in the before/after contact sheet."""
    turntable_frames: int = 12
    """Frames of the turntable of the imported result."""
    turntable_size: int = 160
    """Side of the turntable frames in pixels."""
    turntable_samples: int = 16
    """Cycles samples of the turntable frames."""
    seed: int = 0
    """Seed of the edit job (view order, noise)."""
    threads: int = 0
    """Cycles threads (0: automatic)."""
    startup_timeout_s: float = 180.0
    """How long the backend may take to start and answer."""
    job_timeout_s: float = 3600.0
    """How long the edit job may run before the demo gives up (the paper schedule on a GPU needs raising this)."""


def resolve_preset(config: DemoConfig, real_editor: bool, backend_has_gpu: bool) -> Preset:
    """The preset with the config's overrides applied (a copy; the module's presets stay untouched)."""
    name = config.preset
    if name == "auto":
        name = "paper" if real_editor and backend_has_gpu else "cpu"
    if name not in PRESETS:
        raise ValueError(f"preset: unknown {name!r}; choose from auto, {', '.join(PRESETS)}")
    preset = copy.deepcopy(PRESETS[name])
    for attribute in ("views", "size", "samples", "reconstruction_steps", "total_steps"):
        value = getattr(config, attribute)
        if value is not None:
            setattr(preset, attribute, value)
    if preset.views < 2:
        raise ValueError(f"views: at least 2 training views are needed, got {preset.views}")
    if preset.size < 16:
        raise ValueError(f"size: renders must be at least 16 px, got {preset.size}")
    return preset


def engine_overrides(preset: Preset, editor_source: str, *, lpips_available: bool) -> dict[str, Any]:
    """The preset's engine overrides plus the editor; LPIPS is switched off when AlexNet's weights are missing."""
    overrides = copy.deepcopy(preset.engine_overrides)
    overrides.setdefault("editor", {})["source"] = editor_source
    overrides.setdefault("output", {})["snapshot_views"] = preset.views  # the NeRF's render of every training view
    if preset.memory_mode != "in2n-tiny" and not lpips_available:
        overrides.setdefault("nerf", {}).update({"use_lpips": False, "patch_size": 1})
    return overrides


OUTPUT_PARTS = ("scene", "edited", "single_edits", "nerf_renders", "result_views", "turntable", "work", "demo.blend", "contact_sheet.png",
                "losses.png", "turntable.gif", "turntable_strip.png", "summary.json", "report_plan.json", "progress.json")
"""What the demo writes into its output folder; a new run removes these first (nothing else there is touched)."""


def clean_outputs(out: Path) -> None:
    """Remove an earlier run's outputs from ``out`` (only the demo's own files and folders)."""
    import shutil

    for part in OUTPUT_PARTS:
        path = out / part
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
