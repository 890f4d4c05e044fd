"""The sidebar panels draw against real settings: every property and operator they reference exists.

Panels cannot be drawn for real in background mode (no window), so ``draw`` runs with a recording layout that
checks each ``prop``/``operator`` call against Blender's RNA, in every state the panel has (not connected,
connected with a running job and previews, both scene sources, both connection modes)."""

from __future__ import annotations

from types import ModuleType, SimpleNamespace
from typing import Any

import bpy
import numpy as np
import pytest

pytestmark = pytest.mark.timeout(60)


class OperatorProperties:
    """What ``layout.operator`` returns: the button's operator settings, each checked against the operator's RNA."""

    def __init__(self, rna: Any, calls: list[tuple[str, str]], idname: str) -> None:
        object.__setattr__(self, "_rna", rna)
        object.__setattr__(self, "_where", (calls, idname))

    def __setattr__(self, name: str, value: Any) -> None:
        assert name in self._rna.properties, f"operator {self._where[1]} has no property {name!r}"
        self._where[0].append(("operator property", f"{self._where[1]}.{name}={value}"))


class RecordingLayout:
    def __init__(self, calls: list[tuple[str, str]]) -> None:
        self.calls = calls
        self.scale_y = 1.0

    def _child(self, *args: Any, **kwargs: Any) -> RecordingLayout:
        return RecordingLayout(self.calls)

    row = column = box = split = grid_flow = _child

    def prop(self, data: Any, name: str, **kwargs: Any) -> None:
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        self.calls.append(("prop", name))

    def operator(self, idname: str, **kwargs: Any) -> OperatorProperties:
        module, name = idname.split(".")
        rna = getattr(getattr(bpy.ops, module), name).get_rna_type()  # KeyError if the operator does not exist
        self.calls.append(("operator", idname))
        return OperatorProperties(rna, self.calls, idname)

    def label(self, text: str = "", **kwargs: Any) -> None:
        assert isinstance(text, str)
        self.calls.append(("label", text))

    def progress(self, factor: float = 0.0, type: str = "BAR", text: str = "") -> None:
        assert 0.0 <= factor <= 1.0
        self.calls.append(("progress", text))

    def template_icon(self, icon_value: int = 0, scale: float = 1.0) -> None:
        self.calls.append(("icon", str(icon_value)))

    def icon(self, data: Any) -> int:
        return 1


def draw_all(addon: ModuleType) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    for panel in addon.bpy_shell.panel.CLASSES:
        panel.draw(SimpleNamespace(layout=RecordingLayout(calls)), bpy.context)
    return calls


def test_panels_reference_real_properties_and_operators(addon: ModuleType, scene: bpy.types.Scene) -> None:
    settings = scene.in2n
    calls = draw_all(addon)
    assert ("operator", "in2n.connect") in calls and ("label", "Not connected") in calls
    assert ("label", "No preview yet") in calls
    settings.source, settings.connection_mode = "CAPTURE", "ADDRESS"
    calls = draw_all(addon)
    assert ("operator", "in2n.import_capture") in calls and ("prop", "host") in calls

    # connected, a job editing, a preview: progress bar, the preview's step
    # the installed add-on's own modules (its vendored protocol's message classes)
    api, m = addon.core.worker_api, addon.core.protocol_link.protocol.messages
    rt = addon.bpy_shell.runtime.get()
    hello = m.HelloReply(protocol_version="2.0", server_name="s", server_version="0", python_version="3.11", pid=1,
                         limits=m.ServerLimits(max_frame_bytes=1, max_message_bytes=1))
    rt.state.apply(api.Connected("tcp://127.0.0.1:1", hello, []))
    rt.state.apply(api.JobStarted("job-1", "editing", 0, "scene-1"))
    rt.state.apply(api.ServerEvent(m.JobProgressEvent(job_id="job-1", progress=m.Progress(
        phase="editing", step=5, total_steps=10, fraction=0.5, eta_s=30.0))))
    for action in rt.state.apply(api.PreviewReady("job-1", 5, 4, 2, np.zeros(4 * 2 * 4, np.float32))):
        addon.bpy_shell.runtime.execute(rt, action)
    calls = draw_all(addon)
    assert ("progress", "Editing 5/10, ETA 30s") in calls
    assert ("prop", "show_preview_in_camera") in calls and ("label", "Step 5") in calls
    assert any(kind == "label" and text.startswith("Connected (protocol 2.0)") for kind, text in calls)
