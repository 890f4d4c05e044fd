"""An ``edit_start_request`` as the engine's :class:`~backend.config.EditJobConfig`; what a Continue may ask of a stored job."""

from __future__ import annotations

import dataclasses
import re
import zipfile
from pathlib import Path
from typing import Any

from backend.config import (
    EXACT_DEPTH_LOSS_MULT,
    EXACT_DEPTH_SIGMA,
    EXACT_DEPTH_SIGMA_START,
    DatasetUpdateConfig,
    EditJobConfig,
    EditorConfig,
    StartConfig,
    preset_nerf,
    validate_config,
)
from backend.job.jobdir import JobDir, JobDirError, read_json_object
from protocol import ValidationError
from protocol import messages as m

from .config import JobServiceConfig


def job_config(request: m.EditStartRequest, service: JobServiceConfig, start: StartConfig | None = None, *,
               field: str = "content.engine_overrides") -> EditJobConfig:
    """The protocol's settings first, then ``engine_overrides`` deep-merged on top (unknown keys are named), then
    where the NeRF starts (the server's to say: ``start`` from a resolved ``start_from``, never a client's path)."""
    if "start" in request.engine_overrides:
        raise ValidationError("not an override: start a chained edit with start_from", field=f"{field}.start")
    schedule = request.schedule
    preset = m.PRESETS[request.preset] if request.preset is not None else None
    nerf = dataclasses.replace(preset_nerf(preset), reconstruction_steps=schedule.reconstruction_steps,
                               seed=request.seed)
    config = EditJobConfig(
        prompt=request.instruction.strip(),
        memory_mode=request.memory_mode,
        device=service.device,
        nerf=nerf,
        update=DatasetUpdateConfig(
            total_steps=schedule.total_steps, edit_every_n_steps=schedule.edit_every_n_steps,
            images_per_edit=schedule.images_per_edit, t_min=schedule.t_min, t_max=schedule.t_max,
            ddim_steps=schedule.ddim_steps, guidance_scale=request.guidance_scale,
            image_guidance_scale=request.image_guidance_scale, seed=request.seed),
        editor=EditorConfig(source=service.default_editor,
                            max_side=preset.editor_max_side if preset is not None else EditorConfig().max_side),
    )
    config.output.export_geometry = bool({"mesh", "pointcloud"} & set(request.outputs))
    config.output.snapshot_every = request.snapshots.every_n_steps
    config.output.snapshot_views = request.snapshots.views
    config.output.textured_mesh, config.output.max_faces = request.geometry.textured, request.geometry.max_faces
    config.output.bake_resolution = request.geometry.bake_resolution
    if preset is not None:
        config.output.export_num_points = preset.export_points
    if request.edit_region is not None:
        config.output.region_min = list(request.edit_region.bounds_min)
        config.output.region_max = list(request.edit_region.bounds_max)
    # uploaded depth is a renderer's exact z pass (the protocol's ``depth`` role), not a sensor's
    config.nerf.use_depth, config.nerf.depth_loss_mult = request.use_depth, EXACT_DEPTH_LOSS_MULT
    config.nerf.depth_sigma, config.nerf.depth_sigma_start = EXACT_DEPTH_SIGMA, EXACT_DEPTH_SIGMA_START
    config.nerf.depth_while_editing = request.depth_while_editing
    config = merge(config, request.engine_overrides, field)
    validate_config(config, field)  # types, ranges, finite numbers: before the job is queued
    check_editor_source(config.editor.source, service, f"{field}.editor.source")
    if start is not None:
        # the snapshot's weights only load into the NeRF they were trained with: its job's nerfacto settings
        parent = _parent_config(Path(start.checkpoint))
        config = dataclasses.replace(config, start=start,
                                     nerf=dataclasses.replace(parent.nerf, seed=config.nerf.seed))
    return config


def _parent_config(checkpoint: Path) -> EditJobConfig:
    """The settings of the job whose snapshot ``checkpoint`` a chained edit starts from, refused (in words, without
    the server's paths) when the snapshot is not a checkpoint or its job's stored settings are damaged."""
    step, job = checkpoint.parent.name.removeprefix("step-").lstrip("0") or "0", checkpoint.parents[3].name
    if not zipfile.is_zipfile(checkpoint):  # torch.save's format; anything else fails deep inside torch.load
        raise ValidationError(f"the snapshot at step {step} of job {job} is damaged (its weights are not a checkpoint): choose "
                              "another snapshot or start a new edit", field="content.start_from.step")
    try:
        return EditJobConfig.from_dict(read_json_object(checkpoint.parents[2] / "config.json"))
    except (JobDirError, KeyError, TypeError, ValueError) as exc:
        raise ValidationError(f"job {job} cannot be chained from: its stored settings are damaged "
                              f"({type(exc).__name__}); start a new edit", field="content.start_from.job_id") from None


#: A Hugging Face model id: ``owner/name`` of letters, digits, ``-``, ``_`` and ``.`` (no path tricks).
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


def check_editor_source(source: str, service: JobServiceConfig, path: str) -> None:
    """A client may choose ``tiny``, ``full-random``, ``simulated`` (for scenes uploaded with target images), the
    server's own default, a Hugging Face model id, or a folder inside one of the server's configured model folders;
    never an arbitrary path on the server's disk."""
    if source in ("tiny", "full-random", "simulated", service.default_editor):
        return
    if MODEL_ID.fullmatch(source) and ".." not in source and not Path(source).expanduser().exists():
        return
    folder = Path(source).expanduser().resolve()
    if any(folder.is_relative_to(Path(allowed).resolve()) for allowed in service.model_dirs):
        return
    allowed = ", ".join(str(p) for p in service.model_dirs) or "none configured (serve --model-dir)"
    raise ValidationError(f"{source[:200]!r} is neither a model id (owner/name), 'tiny', 'full-random', 'simulated' nor a "
                          "folder "
                          f"inside this server's model folders ({allowed})", field=path)


def merge(target: Any, overrides: dict[str, Any], path: str) -> Any:
    """A copy of dataclass ``target`` with ``overrides`` applied recursively; a bad key or value raises a
    ValidationError naming its path (e.g. ``content.engine_overrides.nerf.hidden_dimm``)."""
    if not isinstance(overrides, dict):
        raise ValidationError("must be a JSON object", field=path)
    fields = {f.name: f for f in dataclasses.fields(target)}
    values: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in fields:
            raise ValidationError(f"unknown setting (known: {', '.join(sorted(fields))})", field=f"{path}.{name}")
        current = getattr(target, name)
        if dataclasses.is_dataclass(current):
            values[name] = merge(current, value, f"{path}.{name}")
        else:
            values[name] = _coerce(current, value, f"{path}.{name}")
    return dataclasses.replace(target, **values)


def _coerce(current: Any, value: Any, path: str) -> Any:
    """JSON values into the type of the default (lists become tuples; ints are fine where floats are expected)."""
    if isinstance(current, tuple):
        if not isinstance(value, list):
            raise ValidationError(f"must be a list, got {type(value).__name__}", field=path)
        return tuple(value)
    if current is None or value is None:
        return value
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValidationError(f"must be true or false, got {value!r}", field=path)
        return value
    if isinstance(current, (int, float)) and not isinstance(value, bool) and isinstance(value, (int, float)):
        if isinstance(current, int) and isinstance(value, float) and not value.is_integer():
            raise ValidationError(f"must be an integer, got {value!r}", field=path)
        return type(current)(value)
    if isinstance(current, str) and isinstance(value, str):
        return value
    raise ValidationError(f"must be a {type(current).__name__}, got {type(value).__name__}", field=path)


def check_continue(jobs: JobDir, extra_steps: int) -> None:
    """Refuse a Continue before anything changes: a job whose stored config no longer loads or validates, and a
    total the job could never run (it would fail on the limit and lose its listing)."""
    try:
        config = EditJobConfig.from_dict(read_json_object(jobs.config))
        validate_config(config, "config")
    except (ValidationError, ValueError, TypeError, KeyError) as error:
        raise JobDirError(f"{jobs.config}: {error}; this job cannot continue (start a new edit)") from None
    limit = next(f.metadata["le"] for f in dataclasses.fields(DatasetUpdateConfig) if f.name == "total_steps")
    if config.update.total_steps + extra_steps > limit:
        raise JobDirError(f"More steps ({extra_steps:,}) would take this job past {limit:,} editing steps, the "
                          f"limit: at most {limit - config.update.total_steps:,} more")
