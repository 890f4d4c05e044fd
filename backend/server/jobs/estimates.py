"""How long a job will take on this server (``backend.cost_model``), for ``edit_start_reply`` and before a job is
submitted (``edit_estimate_request``)."""

from __future__ import annotations

import sys
from typing import Any

from backend.cost_model import estimate
from protocol import messages as m


def device_kind(config: Any) -> str | None:
    """cuda / cpu / mps for a job config; None while the device is not known (torch not imported yet: the server
    never imports it just to answer)."""
    if config.device in ("auto", "cuda") or config.device.startswith("cuda:"):
        torch = sys.modules.get("torch")
        if torch is None:
            return None
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(config.device)


def scene_estimate(config: Any, cameras: list[m.Camera]) -> float | None:
    """The job's duration on an uploaded scene, in seconds (None while the device is not known)."""
    kind = device_kind(config)
    if kind is None:
        return None
    return round(estimate(config, len(cameras), cameras[0].w, cameras[0].h, kind).total_s, 1)


def estimate_reply(config: Any, request: m.EditEstimateRequest) -> m.EditEstimateReply:
    kind = device_kind(config)
    if kind is None:
        return m.EditEstimateReply(estimated_s=None)
    guess = estimate(config, request.num_views, request.width, request.height, kind)
    quick = m.PRESETS["quick"]
    suggested = "quick" if guess.total_s > 3600 and request.request.schedule != quick.schedule else None
    return m.EditEstimateReply(estimated_s=round(guess.total_s, 1), device=guess.device_kind,
                               reconstruction_s=round(guess.reconstruction_s, 1),
                               editing_s=round(guess.editing_nerf_s, 1), edits_s=round(guess.edits_s, 1),
                               edits=guess.edits, suggested_preset=suggested)
