"""The whole demo, headless, in one Blender (``bpy``) process: scene -> add-on -> backend -> edit -> import -> outputs.

Every product step goes through the add-on's own operators and timer callback (see :mod:`demo.addon_driver`): the
demo never talks to the backend by itself. The pictures with text (contact sheet, loss plot, GIF) are drawn by
:mod:`demo.report` in the backend's environment.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import bpy

from demo import blender_views as views
from demo import layout
from demo import procedural_scene as ps
from demo.addon_driver import AddonDriver, DemoError, install_addon, set_preferences
from demo.config import DemoConfig, Preset, engine_overrides, resolve_preset
from demo.editor_choice import SIMULATED_NOTE, EditorChoice, alexnet_weights_present, choose_editor
from demo.progress import Laps, ProgressPrinter, say
from demo.recorder import Recorder
from demo.result_images import edited_images, nerf_heldout, nerf_views
from protocol.messages import Schedule

ROOT = Path(__file__).resolve().parents[1]


def backend_args(work: Path) -> str:
    """Extra ``backend serve`` arguments: a job store of the demo's own (no old jobs are resumed, nothing is left in
    the user's cache) when the server supports one."""
    return f"--jobs-dir {work / 'jobs'}"


def plan_editor(choice: EditorChoice, explicit: bool, gpu: bool) -> tuple[EditorChoice, str]:
    """Real weights found in the cache but no GPU: InstructPix2Pix takes minutes per edit on a CPU, so the demo uses
    the simulated editor unless the user asked for the weights with ``--editor``."""
    if choice.real and not gpu and not explicit:
        note = (f"InstructPix2Pix weights found ({choice.origin}) but the backend has no GPU; the demo uses the "
                f"SIMULATED editor instead (pass --editor {choice.source} to edit with them on the CPU, slowly): "
                + SIMULATED_NOTE)
        return EditorChoice("simulated", False, "simulated (weights found but no GPU)", note), note
    if choice.real and not gpu:
        return choice, "real InstructPix2Pix on the CPU: expect minutes per edit"
    return choice, choice.note


def configure_panel(scene: bpy.types.Scene, collection: bpy.types.Collection, preset: Preset, config: DemoConfig,
                    overrides: dict[str, Any]) -> None:
    """What a user sets in the sidebar panel before pressing Edit."""
    settings = scene.in2n
    settings.source, settings.camera_collection = "RENDER", collection
    settings.resolution_x = settings.resolution_y = preset.size
    settings.render_samples = preset.samples
    settings.instruction = config.instruction
    settings.reconstruction_steps, settings.total_steps = preset.reconstruction_steps, preset.total_steps
    settings.edit_every_n_steps, settings.ddim_steps = preset.edit_every_n_steps, preset.ddim_steps
    settings.memory_mode, settings.seed = preset.memory_mode, config.seed
    settings.use_depth = True  # what Blender knows: each view's exact depth supervises the NeRF
    if config.scope == "selected":  # the user selects the object the instruction is about
        settings.edit_scope, settings.hide_originals, settings.region_margin = "SELECTED", True, 0.15
        # the edit baked onto a copy of the user's own sphere (shown), and the NeRF's geometry beside it (scored)
        settings.result, settings.bake_resolution = "BOTH", 512
        for obj in scene.objects:
            obj.select_set(obj.name == config.simulated_object)
    else:
        settings.edit_scope = "ALL"
    settings.preview_rate, settings.preview_max_side = 2.0, max(64, min(preset.size, 256))
    settings.import_mesh = settings.import_pointcloud = settings.import_textures = True
    settings.engine_overrides = json.dumps(overrides)


def sheet_views(cameras: list[bpy.types.Object], edited: set[str], count: int) -> list[bpy.types.Object]:
    """``count`` views spread over the cameras, taken from the views that have an edited image when there are
    enough of them (a short schedule edits only some views)."""
    pool = [camera for camera in cameras if camera.name in edited]
    if len(pool) < min(count, len(cameras)):
        pool = list(cameras)
    return [pool[i] for i in layout.evenly_spaced(count, len(pool))]


def run_report(backend_python: str, plan_path: Path) -> dict[str, Any]:
    completed = subprocess.run([backend_python, "-m", "demo.report", str(plan_path)], cwd=ROOT, capture_output=True,
                               text=True, timeout=300)
    if completed.returncode != 0:
        raise DemoError(f"drawing the report failed ({backend_python} -m demo.report):\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


@dataclass
class EditOutcome:
    """What the edit stage leaves for the output stage."""

    built: ps.BuiltScene
    choice: EditorChoice
    editor_note: str
    preset: Preset
    cameras: list[bpy.types.Object]
    recorder: Recorder
    driver: AddonDriver
    server: Any
    """The backend's hello reply."""
    result: bpy.types.Collection
    """The collection Import result created."""
    targets: dict[str, Path]
    """Camera name -> Blender's render of the intended edit (simulated editor only; empty otherwise)."""
    nerf_renders: dict[str, Path]
    """Camera name -> the NeRF's render of that training view when the job ended (the job's last history renders)."""


def drive_edit(config: DemoConfig, backend_python: str, out: Path, laps: Laps, *, addon: ModuleType | None = None,
               connect: Callable[[AddonDriver], None] | None = None, factory_reset: bool = True) -> EditOutcome:
    """Scene, add-on, backend, Edit, Import result. ``addon`` / ``connect`` / ``factory_reset`` are for tests that
    share one Blender process with an installed add-on and a scripted backend (default: install the zip, press
    Start local backend, start from factory settings)."""
    choice = choose_editor(config.editor)
    say(f"editor: {choice.origin}" + ("" if choice.real else " -- " + choice.note))
    built = ps.build_scene(settings=ps.RenderSettings(threads=config.threads), factory_reset=factory_reset)
    say(f"scene: {', '.join(spec.name for spec in built.spec.objects)} on a checkered ground")
    if addon is None:
        addon = install_addon(out / "work")
        set_preferences(backend_python, ROOT, backend_args(out / "work"))
    driver = AddonDriver(addon)
    laps.lap("scene_and_addon")

    try:
        if connect is None:
            say(f"starting the backend with the add-on's 'Start local backend' ({backend_python}); "
                f"log: {driver.backend_log()}")
            driver.start_local_backend(config.startup_timeout_s)
        else:
            connect(driver)
        server = driver.rt.state.server
        gpu = bool(server.gpu_name)
        say(f"connected: {server.server_name} {server.server_version}, {server.device_status or 'device unknown'}")
        laps.lap("backend_start")

        choice, editor_note = plan_editor(choice, explicit=config.editor not in (None, "tiny"), gpu=gpu)
        preset = resolve_preset(config, choice.real, gpu)
        lpips = alexnet_weights_present()
        overrides = engine_overrides(preset, choice.source, lpips_available=lpips)
        if editor_note:
            say(("WARNING: " if not choice.real else "note: ") + editor_note)
        if preset.memory_mode != "in2n-tiny" and not lpips:
            say("note: torchvision's AlexNet weights are not in the torch cache: training without the LPIPS loss")
        say(f"preset {preset.name}: {preset.views} views at {preset.size} px, {preset.reconstruction_steps} "
            f"reconstruction + {preset.total_steps} editing steps, one edit every {preset.edit_every_n_steps} steps")

        collection, cameras = views.training_cameras(built, preset.views)
        bpy.context.scene.cycles.samples = preset.samples
        originals = views.render_all(cameras, out / "scene" / "images", preset.size)
        targets: list[Path] = []
        if choice.simulated:  # what the simulated editor aims at: Blender's render of the intended edit
            say(f"simulated editor: rendering the intended edit ({config.simulated_object} as blue glass) from the "
                f"{len(cameras)} training cameras; the add-on uploads these targets with the views")
            with views.intended_edit(config.simulated_object):
                targets = views.render_all(cameras, out / "scene" / "targets", preset.size)
            for camera, target in zip(cameras, targets):
                camera[addon.bpy_shell.cameras.PROP_TARGET] = str(target)
        ps.write_transforms(out / "scene" / "transforms.json", cameras, [f"images/{p.name}" for p in originals],
                            preset.size, preset.size, [f"targets/{p.name}" for p in targets] if targets else None)
        laps.lap("render_originals")

        configure_panel(bpy.context.scene, collection, preset, config, overrides)
        recorder = Recorder(addon.core.protocol_link.protocol.messages, addon.core.worker_api)
        recorder.attach(driver.rt.state)
        say(f"Edit: \"{config.instruction}\" (the add-on renders {preset.views} views, uploads them, starts the job)")
        driver.edit(config.job_timeout_s, ProgressPrinter(driver.rt.state, recorder))
        say(f"job {recorder.record.job_id} done; {len(driver.rt.state.history)} live previews reached the "
            f"'{driver.runtime.PREVIEW_IMAGE}' image")
        laps.lap("edit_job")

        job = driver.rt.state.job
        if not job.has_results:  # the engine keeps a job's edits when it cannot export geometry, and logs why
            reason = next((line for line in reversed(recorder.record.logs) if "geometry" in line),
                          "no mesh or point cloud among the results")
            raise DemoError(f"job {job.job_id} finished without geometry to import ({reason}); train the NeRF "
                            f"longer (--reconstruction-steps) or use more / larger views")
        result = driver.import_result(300)
        say(f"Import result: {', '.join(f'{o.name} ({len(o.data.vertices)} vertices)' for o in result.objects)}")
        nerf_renders = nerf_views(recorder, driver.download_final_snapshot(out / "work" / "downloads", 300),
                                  [camera.name for camera in cameras], out / "nerf_renders")
        laps.lap("import_result")
    finally:
        driver.stop_local_backend()
    return EditOutcome(built, choice, editor_note, preset, cameras, recorder, driver, server, result,
                       {camera.name: path for camera, path in zip(cameras, targets)}, nerf_renders)


def write_outputs(config: DemoConfig, edit: EditOutcome, out: Path, backend_python: str, laps: Laps) -> dict[str, Any]:
    """Edited images by view, renders of the imported result, turntable, .blend, report pictures; the summary."""
    preset, record = edit.preset, edit.recorder.record
    uploaded = json.loads(bpy.context.scene.get(edit.driver.runtime.UPLOADED_CAMERAS, "[]"))
    edited = edited_images(edit.recorder, uploaded, out / "edited")
    shown = views.result_objects(edit.result)
    if config.scope == "selected":  # the user's own scene, the edited object in place of its original
        shown += [obj for name, obj in edit.built.objects.items() if name != config.simulated_object]
    sheet_cameras = sheet_views(edit.cameras, set(edited), config.sheet_views)

    def clipped(cameras: list[bpy.types.Object]) -> Any:
        # a whole-scene NeRF has floaters right in front of the training cameras; the selected object's geometry
        # comes back inside its own bounds only, so nothing needs hiding there
        if config.scope == "selected":
            return contextlib.nullcontext()
        return views.near_clip(cameras, views.RESULT_NEAR_CLIP)

    with views.only_visible(shown, preset.samples), clipped(sheet_cameras):
        result_views = views.render_all(sheet_cameras, out / "result_views", preset.size)
    _, turntable = views.turntable_cameras(edit.built, config.turntable_frames)
    with views.only_visible(list(edit.built.objects.values()), config.turntable_samples):
        before_frames = views.render_all(turntable, out / "turntable" / "original", config.turntable_size)
        target_frames: list[Path] = []
        if edit.targets:  # held-out views of the intended edit: what the imported result is scored against
            with views.intended_edit(config.simulated_object):
                target_frames = views.render_all(turntable, out / "turntable" / "target", config.turntable_size)
    with views.only_visible(shown, config.turntable_samples), clipped(turntable):
        after_frames = views.render_all(turntable, out / "turntable" / "result", config.turntable_size)
    nerf_frames = (nerf_heldout(backend_python, record.job_id, turntable, out, config.turntable_size)
                   if target_frames else [])
    laps.lap("render_outputs")
    blend = views.save_blend(out / "demo.blend")

    record_json = record.to_json()
    (out / "progress.json").write_text(json.dumps(record_json, indent=1))
    plan = report_plan(config, edit, out, edited, sheet_cameras, result_views,
                       {"original": before_frames, "target": target_frames, "result": after_frames,
                        "nerf": nerf_frames})
    plan["record"] = record_json
    plan_path = out / "report_plan.json"
    plan_path.write_text(json.dumps(plan, indent=1))
    pictures = run_report(backend_python, plan_path)
    scores = pictures.pop("scores", None)
    laps.lap("report")

    state, server = edit.driver.rt.state, edit.server
    preview = bpy.data.images.get(edit.driver.runtime.PREVIEW_IMAGE)
    progress = record.progress
    real = edit.choice.real
    return {
        "instruction": config.instruction,
        "editor": {"source": edit.choice.source, "origin": edit.choice.origin, "real_weights": real,
                   "simulated": edit.choice.simulated, "follows_instruction": real,
                   "note": edit.editor_note},
        "preset": asdict(preset),
        "backend": {"server": f"{server.server_name} {server.server_version}", "device": server.device_status,
                    "gpu": server.gpu_name, "log": str(edit.driver.backend_log())},
        "job": {"id": record.job_id, "state": state.job.state if state.job else None,
                "images_edited": progress[-1].images_edited if progress else 0,
                "final_losses": progress[-1].losses if progress else {}, "progress_events": len(progress),
                "previews_received": len(state.history),
                "preview_image_size": list(preview.size) if preview is not None else None},
        "result": {"collection": edit.result.name,
                   "objects": {o.name: {"kind": o.get("in2n_kind", ""), "vertices": len(o.data.vertices),
                                        "faces": len(o.data.polygons)} for o in edit.result.objects},
                   "world_bounds": views.world_bounds(views.result_objects(edit.result)),
                   "source_world_bounds": views.world_bounds(
                       [obj for name, obj in edit.built.objects.items()
                        if (name == config.simulated_object if config.scope == "selected" else name != "Ground")])},
        "edited_views": sorted(edited),
        "scores": scores,
        "display": {"scope": config.scope,
                    "result_near_clip_m": views.RESULT_NEAR_CLIP if config.scope == "scene" else None},
        "outputs": {"blend": str(blend), "scene": str(out / "scene" / "transforms.json"), "edited": str(out / "edited"),
                    **pictures, "progress": str(out / "progress.json")},
    }


def editor_meaning(choice: EditorChoice) -> str:
    if choice.real:
        return "real InstructPix2Pix"
    if choice.simulated:
        return "SIMULATED editor (not InstructPix2Pix; blends toward Blender's render of the intended edit)"
    return "TINY RANDOM editor: the edit is NOT meaningful"


SINGLE_EDITS = "single_edits"
"""Output folder of the baseline: each photo edited once by the simulated editor (written by :mod:`demo.report`)."""


def report_plan(config: DemoConfig, edit: EditOutcome, out: Path, edited: dict[str, Path],
                sheet_cameras: list[bpy.types.Object], result_views: list[Path],
                turntable: dict[str, list[Path]]) -> dict[str, Any]:
    """What :mod:`demo.report` draws and scores (paths relative to ``out``)."""
    def rel(path: Path | None) -> str | None:
        return str(path.relative_to(out)) if path is not None else None

    preset, simulated = edit.preset, bool(edit.targets)
    columns = [("original", "original render")]
    if simulated:
        columns.append(("target", "intended edit (Blender)"))
    # simulated: the baseline 2D edit is the editor applied once to each photo (as a 2D editor is used alone); the
    # backend's edited images are steps of Iterative DU, made from NeRF renders, not independent 2D edits
    columns.append(("single", "single 2D edit (simulated)") if simulated else ("edited", "edited by the backend"))
    columns += [("nerf", "NeRF after Iterative DU"), ("result", "imported result (Blender)")]
    rows = {"original scene": turntable["original"]}
    if turntable["target"]:
        rows["intended edit (Blender)"] = turntable["target"]
    if turntable["nerf"]:
        rows["the NeRF itself"] = turntable["nerf"]
    rows["imported result"] = turntable["result"]
    plan: dict[str, Any] = {
        "title": f"\"{config.instruction}\"",
        "subtitle": f"{editor_meaning(edit.choice)}; {preset.views} views, {preset.size} px, preset {preset.name}",
        "warning": not edit.choice.real,
        "sheet_columns": [title for _, title in columns],
        "sheet_keys": [key for key, _ in columns],
        "note": (f"selected objects only: the {config.simulated_object} was edited (its mask and depth from Blender) "
                 "and imported in place of the original; the rest is the scene's own objects"
                 if config.scope == "selected" else
                 f"imported result rendered with the near clip at {views.RESULT_NEAR_CLIP} m (hides floaters in front "
                 "of the cameras)"),
        "sheet": [{"label": camera.name, "original": f"scene/images/{camera.name}.png",
                   "target": rel(edit.targets.get(camera.name)), "edited": rel(edited.get(camera.name)),
                   "single": f"{SINGLE_EDITS}/{camera.name}.png" if simulated else None,
                   "nerf": rel(edit.nerf_renders.get(camera.name)), "result": rel(path)}
                  for camera, path in zip(sheet_cameras, result_views)],
        "turntable": {"rows": {label: [str(p.relative_to(out)) for p in frames] for label, frames in rows.items()},
                      "fps": 6},
        "outputs": {"contact_sheet": "contact_sheet.png", "loss_plot": "losses.png",
                    "turntable_gif": "turntable.gif", "turntable_strip": "turntable_strip.png"},
    }
    if simulated:  # each image set against Blender's renders of the intended edit and of the original scene
        def triples(images: dict[str, Path]) -> list[list[str | None]]:
            return [[rel(path), rel(edit.targets[name]), f"scene/images/{name}.png"]
                    for name, path in sorted(images.items()) if name in edit.targets]

        plan["single_edits"] = {"scene": "scene", "folder": SINGLE_EDITS, "seed": config.seed,
                                "timestep_fraction": Schedule().t_max}
        singles = {name: out / SINGLE_EDITS / f"{name}.png" for name in edit.targets}
        plan["scores"] = {
            "single_2d_edits": triples(singles),
            "nerf_after_du": triples(edit.nerf_renders),
            "imported_result_heldout": [[rel(result), rel(target), rel(original)] for result, target, original
                                        in zip(turntable["result"], turntable["target"], turntable["original"])],
        }
        if turntable["nerf"]:  # the NeRF on the same held-out views: what the import keeps of it
            plan["scores"]["nerf_heldout"] = [[rel(nerf), rel(target), rel(original)] for nerf, target, original
                                              in zip(turntable["nerf"], turntable["target"], turntable["original"])]
    return plan


def run_demo(config: DemoConfig, backend_python: str, **seams: Any) -> dict[str, Any]:
    """The whole demo; returns (and writes) the summary. ``seams``: see :func:`drive_edit`."""
    laps = Laps()
    out = config.out_dir.resolve()
    (out / "work").mkdir(parents=True, exist_ok=True)
    edit = drive_edit(config, backend_python, out, laps, **seams)
    summary = write_outputs(config, edit, out, backend_python, laps)
    summary["timings_s"] = {**laps.seconds, "total": laps.total()}
    partial = out / "summary.json.partial"
    partial.write_text(json.dumps(summary, indent=1))
    partial.replace(out / "summary.json")
    return summary


def print_outputs(summary: dict[str, Any], out: Path) -> None:
    say(f"done in {summary['timings_s']['total']:.0f} s; outputs in {out}:")
    for key, path in summary["outputs"].items():
        print(f"  {key:16s} {path}", flush=True)
    print(f"  {'summary':16s} {out / 'summary.json'}", flush=True)
    scores = summary.get("scores") or {}
    for name, label in (("single_2d_edits", "single 2D edits (each photo edited once)"),
                        ("nerf_after_du", "NeRF after Iterative DU (training views)"),
                        ("nerf_heldout", "NeRF after Iterative DU (held-out turntable views)"),
                        ("imported_result_heldout", "imported result (held-out turntable views)")):
        if name in scores:
            score = scores[name]
            say(f"{label}: edited region {score['edited_region_vs_target_db']:.1f} dB vs the intended edit, "
                f"{score['edited_region_vs_original_db']:.1f} dB vs the original ({score['views']} views)")
    if summary["editor"]["simulated"]:
        say("NOTE: the 2D edits came from the SIMULATED editor (not InstructPix2Pix); see the editor note above.")
    elif not summary["editor"]["real_weights"]:
        say("NOTE: the edit was made by the tiny RANDOM editor and is NOT meaningful; see the editor note above.")

