"""The benchmark's figure: mean held-out scores per method and wall time (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

PANELS = (
    ("psnr", "PSNR vs GT edit (dB)"),
    ("psnr_edited_region", "PSNR, edited region (dB)"),
    ("psnr_unedited_region", "PSNR, unedited region (dB)"),
    ("ssim", "SSIM vs GT edit"),
)


def plot_results(results: dict[str, Any], path: Path) -> Path:
    """Bar charts of ``results["methods"][name]["mean"][metric]`` and ``train_seconds``; written to ``path``."""
    methods = list(results["methods"])
    colors = {"iterative_du": "tab:blue", "one_shot": "tab:orange", "no_edit": "tab:gray"}
    figure, axes = plt.subplots(1, len(PANELS) + 1, figsize=(4 * (len(PANELS) + 1), 3.6))
    for axis, (key, title) in zip(axes, PANELS):
        values = [results["methods"][m]["mean"][key] for m in methods]
        bars = axis.bar(methods, values, color=[colors.get(m, "tab:green") for m in methods])
        axis.bar_label(bars, fmt="%.3f" if key.startswith("ssim") else "%.1f")
        axis.set_title(title)
        axis.set_ylim(0, 1.15 * max([v for v in values if v == v] + [1e-6]))  # room for the labels (NaN skipped)
        if key == "psnr" and "target_psnr_db" in results.get("targets", {}):
            axis.axhline(results["targets"]["target_psnr_db"], color="tab:red", linestyle="--", linewidth=1)
    seconds = [results["methods"][m]["train_seconds"] for m in methods]
    bars = axes[-1].bar(methods, seconds, color=[colors.get(m, "tab:green") for m in methods])
    axes[-1].bar_label(bars, fmt="%.0f")
    axes[-1].set_ylim(0, 1.15 * max(seconds + [1e-6]))
    axes[-1].set_title("wall time (s)")
    for axis in axes:
        axis.tick_params(axis="x", labelrotation=20)
    figure.suptitle(f"3D consistency on {results['dataset']['heldout_views']} held-out views "
                    f"(simulated editor, {results['device']})")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
