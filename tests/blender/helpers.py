"""Helpers shared by the add-on tests (import-safe: no bpy here)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def pump_until(addon: ModuleType, condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Call the add-on's timer callback (timers never fire in module mode) until ``condition()`` holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        addon.bpy_shell.runtime.pump()
        if condition():
            return
        time.sleep(0.02)
    rt = addon.bpy_shell.runtime.peek()
    reports = [r.message for r in rt.reports] if rt else []
    raise AssertionError(f"condition not reached within {timeout_s} s; reports: {reports}")


def backend_python() -> str:
    """The backend environment's interpreter ($IN2N_BACKEND_PYTHON, else build.py's environment path)."""
    configured = os.environ.get("IN2N_BACKEND_PYTHON")
    if configured:
        return configured
    result = subprocess.run([sys.executable, str(REPO_ROOT / "build.py"), "env-path", "backend"],
                            capture_output=True, text=True, check=True)
    return result.stdout.strip().splitlines()[-1]




def evaluated_pointcloud(obj: Any, depsgraph: Any) -> tuple[Any, Any]:
    """``(owner, point cloud)`` of what ``obj``'s modifiers evaluate to; keep ``owner`` while using the cloud (RNA
    views die with it). Blender 5.x has ``Object.evaluated_geometry()`` (the owner: that geometry set); Blender 4.2
    lacks it and yields the point cloud as an instance of the object in ``depsgraph.object_instances`` (the owner:
    the depsgraph)."""
    evaluated = obj.evaluated_get(depsgraph)
    if hasattr(evaluated, "evaluated_geometry"):
        geometry = evaluated.evaluated_geometry()
        return geometry, geometry.pointcloud
    for instance in depsgraph.object_instances:
        if instance.object.type == "POINTCLOUD" and instance.object.original == obj:
            return depsgraph, instance.object.data
    return depsgraph, None
