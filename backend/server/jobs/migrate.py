"""Job folders of earlier releases, read by this one: a stored request is given this release's setting names.

A job's ``record.json`` keeps its ``edit_start_request`` as the client sent it, ``engine_overrides`` included, and the
job's settings are resolved from it again whenever it runs (a resume after a restart, a Continue). Protocol minor
versions only add optional fields, so the request itself decodes; the overrides, though, name engine settings, and
some of those were renamed (protocol 1.1's ``output.history_every`` is ``output.snapshot_every``). The same table of
renames, :data:`backend.config.RENAMED_FIELDS`, reads an earlier ``config.json``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from backend.config import EditJobConfig, current_names


def current_setting_names(overrides: Any, settings: type = EditJobConfig) -> Any:
    """``overrides`` (nested dicts mirroring ``settings``) with every renamed key under its current name; keys this
    release does not know are kept, for validation to name them. Where an old and a current name are both given, the
    current one wins."""
    if not isinstance(overrides, dict) or not dataclasses.is_dataclass(settings):
        return overrides
    defaults = settings()
    current = current_names(settings, overrides)
    for name, value in current.items():
        nested = getattr(defaults, name, None)
        if dataclasses.is_dataclass(nested):
            current[name] = current_setting_names(value, type(nested))
    return current


def migrate_stored_request(request: Any) -> Any:
    """A stored ``edit_start_request`` (encoded) as this release reads it (a damaged one as it is: decoding it names
    what is wrong)."""
    overrides = request.get("engine_overrides") if isinstance(request, dict) else None
    if not isinstance(overrides, dict):
        return request
    return {**request, "engine_overrides": current_setting_names(overrides)}
