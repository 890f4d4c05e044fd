"""The demo's pictures with labels: before/after contact sheet, loss plot, turntable strip and GIF.

Runs in the backend environment (``$IN2N_BACKEND_PYTHON -m demo.report PLAN.json``), which has Pillow and matplotlib
(pinned in ``requirements/backend.txt``); the Blender environment only has numpy, and Blender cannot draw text into
an image without a display. The plan is written by the Blender side of the demo (:mod:`demo.run`) and names every
input file; paths in it are relative to the plan's folder.

Plan keys: ``title`` (str), ``subtitle`` (str), ``note`` (str, optional), ``sheet`` (rows of ``{"label", key:
file}``), ``sheet_columns`` (column titles), ``sheet_keys`` (the row key each column shows; default original, edited,
result), ``single_edits`` (optional: ``{"scene", "folder", "seed", "timestep_fraction"}``, see
:func:`single_edits`), ``scores`` (optional: ``{name: [[image, target, original], ...]}``, scored by :mod:`demo.scores`),
``turntable`` (``{"rows": {label: [frame files]}, "fps"}``), ``record`` (the recorder's JSON: ``loss_series``,
``phase_starts``), ``outputs`` (``{"contact_sheet", "loss_plot", "turntable_gif", "turntable_strip"}``).
Prints one JSON object: the files written and, with ``scores``, the scores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from demo import layout  # noqa: E402

TEXT = (20, 20, 20)
MUTED = (110, 110, 110)
WARNING = (180, 30, 30)
SHEET_TILE = 192
SHEET_TITLE_H = 78
PHASE_NAMES = {"reconstructing": "reconstruction", "editing": "Iterative DU"}


def load(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def save(image: np.ndarray, path: Path) -> Path:
    """PNG via a temporary file and rename: a crash never leaves half a file."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    Image.fromarray(image).save(partial, format="PNG")
    partial.replace(path)
    return path


def font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def contact_sheet(plan: dict[str, Any], base: Path) -> np.ndarray:
    """Rows = views, columns = the plan's (original render | [intended edit] | edited | NeRF | imported result)."""
    from PIL import Image, ImageDraw

    columns = plan["sheet_columns"]
    keys = plan.get("sheet_keys", ("original", "edited", "result"))[:len(columns)]
    cells = [[load(base / row[key]) if row.get(key) else None for key in keys] for row in plan["sheet"]]
    title_h, header_h, label_w = SHEET_TITLE_H, 26, 90
    canvas, boxes = layout.grid(cells, SHEET_TILE, gap=6, top=title_h + header_h, left=label_w)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), plan["title"], fill=TEXT, font=font(18))
    draw.text((10, 34), plan.get("subtitle", ""), fill=WARNING if plan.get("warning") else MUTED, font=font(13))
    draw.text((10, 54), plan.get("note", ""), fill=MUTED, font=font(12))
    for column, box in zip(columns, boxes[0]):
        draw.text((box.left + box.width / 2, title_h + header_h / 2), column, fill=TEXT, font=font(14), anchor="mm")
    for row, row_boxes in zip(plan["sheet"], boxes):
        box = row_boxes[0]
        draw.text((label_w / 2 + 3, box.top + box.height / 2), row["label"], fill=TEXT, font=font(13), anchor="mm")
        for cell_box, key in zip(row_boxes, keys):
            if not row.get(key):
                missing = "(not edited)" if key == "edited" else "(none)"
                draw.text((cell_box.left + cell_box.width / 2, cell_box.top + cell_box.height / 2), missing,
                          fill=MUTED, font=font(13), anchor="mm")
    return np.asarray(image)


def _phase_lines(axis: Any, phase_starts: dict[str, int]) -> None:
    for phase, start in phase_starts.items():
        if phase in PHASE_NAMES:
            axis.axvline(start, color="gray", linestyle="--", linewidth=0.8)
            axis.annotate(PHASE_NAMES[phase], (start, 1.0), xycoords=("data", "axes fraction"), xytext=(4, -14),
                          textcoords="offset points", color="gray", fontsize=9)


def loss_plot(plan: dict[str, Any], path: Path) -> Path:
    """Training losses (log scale) and, beside them, PSNR against the training images, over the job's global step
    (reconstruction, then Iterative DU: there the targets are the edited images, which keep changing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record = plan["record"]
    series = {name: points for name, points in record["loss_series"].items() if points}
    losses = {name: points for name, points in series.items() if "psnr" not in name}
    psnr = {name: points for name, points in series.items() if "psnr" in name}
    figure, axes = plt.subplots(1, 2 if psnr else 1, figsize=(11 if psnr else 8, 4.2), squeeze=False)
    axis = axes[0][0]
    for name in sorted(losses, key=lambda n: (n != "loss", n)):
        points = [p for p in losses[name] if p[2] > 0]  # log scale: a loss that is exactly 0 has no place on it
        axis.plot([p[0] for p in points], [p[2] for p in points], label=name, linewidth=1.6 if name == "loss" else 1.0,
                  marker="." if len(points) < 40 else None)
    if losses:
        axis.set_yscale("log")
    if not losses:
        axis.text(0.5, 0.5, "no losses were reported", transform=axis.transAxes, ha="center", color="gray")
    else:
        axis.legend(fontsize=8, loc="lower left")
    axis.set_ylabel("training loss (log scale)")
    if psnr:
        right = axes[0][1]
        for name, points in sorted(psnr.items()):
            right.plot([p[0] for p in points], [p[2] for p in points], label=name, color="tab:green",
                       marker="." if len(points) < 40 else None)
        right.set_ylabel("PSNR vs training images (dB)")
        right.legend(fontsize=8, loc="lower right")
    for axis in axes[0]:
        _phase_lines(axis, record.get("phase_starts", {}))
        axis.set_xlabel("NeRF step (reconstruction, then editing)")
        axis.grid(alpha=0.3)
    figure.suptitle(plan["title"], fontsize=11)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    figure.savefig(partial, dpi=100, format="png")
    plt.close(figure)
    partial.replace(path)
    return path


def turntable(plan: dict[str, Any], base: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """A labelled strip (one row per label, frames side by side) and the GIF frames (rows stacked per frame)."""
    from PIL import Image, ImageDraw

    rows = {label: [load(base / frame) for frame in frames] for label, frames in plan["turntable"]["rows"].items()}
    labels = list(rows)
    count = min(len(frames) for frames in rows.values())
    label_w = max(120, int(max(font(13).getlength(label) for label in labels)) + 16)  # no label cut off
    canvas, boxes = layout.grid([rows[label][:count] for label in labels], max(rows[labels[0]][0].shape[:2]), gap=2,
                                left=label_w)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for label, row_boxes in zip(labels, boxes):
        box = row_boxes[0]
        draw.text((label_w / 2, box.top + box.height / 2), label, fill=TEXT, font=font(13), anchor="mm")
    frames = [np.concatenate([rows[label][i] for label in labels], axis=1) for i in range(count)]
    return np.asarray(image), frames


def write_gif(frames: list[np.ndarray], path: Path, fps: float) -> Path:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    partial = path.with_name(path.name + ".partial")
    images[0].save(partial, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    partial.replace(path)
    return path


def single_edits(spec: dict[str, Any], base: Path) -> Path:
    """The baseline a 2D editor gives alone: every photo of the scene edited once, independently, by the SIMULATED
    editor at the top of the noise range (``timestep_fraction`` of the schedule), seeded. Written as
    ``<folder>/<photo name>.png``."""
    import torch

    from backend.editing.simulated import SimulatedInstructEditor
    from backend.pixels import to_uint8
    from backend.scene import load_scene

    scene = load_scene(base / spec["scene"])
    editor = SimulatedInstructEditor.from_scene(scene)
    generator = torch.Generator().manual_seed(int(spec["seed"]))
    timestep = round(float(spec["timestep_fraction"]) * editor.num_train_timesteps)
    folder = base / spec["folder"]
    for frame in scene.frames:
        photo = torch.from_numpy(load(frame.image_path).copy()).permute(2, 0, 1)[None].float() / 255
        edited = editor.edit(photo, photo, "", timestep=timestep, generator=generator)[0]
        save(to_uint8(edited.permute(1, 2, 0)), folder / f"{frame.image_path.stem}.png")
    return folder


def make_report(plan_path: Path) -> dict[str, Any]:
    plan = json.loads(plan_path.read_text())
    base = plan_path.parent
    outputs = {key: base / value for key, value in plan["outputs"].items()}
    written: dict[str, Any] = {}
    if plan.get("single_edits"):  # before the sheet, which shows them
        written["single_edits"] = str(single_edits(plan["single_edits"], base))
    if plan.get("sheet"):
        written["contact_sheet"] = str(save(contact_sheet(plan, base), outputs["contact_sheet"]))
    written["loss_plot"] = str(loss_plot(plan, outputs["loss_plot"]))
    if plan.get("turntable", {}).get("rows"):
        strip_image, frames = turntable(plan, base)
        written["turntable_strip"] = str(save(strip_image, outputs["turntable_strip"]))
        written["turntable_gif"] = str(write_gif(frames, outputs["turntable_gif"], plan["turntable"].get("fps", 8)))
    if plan.get("scores"):
        from demo.scores import score

        written["scores"] = {name: score(triples, load, base) for name, triples in plan["scores"].items()}
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plan", type=Path, help="the plan JSON written by the demo")
    args = parser.parse_args(argv)
    print(json.dumps(make_report(args.plan.resolve())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
