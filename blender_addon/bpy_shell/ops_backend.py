"""Operators: connect to / start / stop the backend, and the report operator used from the timer."""

from __future__ import annotations

import shlex

import bpy
from bpy.props import EnumProperty, StringProperty

from ..core import worker_api as api
from ..core.local_backend import BackendStartError, LocalBackendConfig, start_local_backend
from ..core.protocol_link import protocol
from . import runtime
from .properties import preferences


def _connected() -> bool:
    rt = runtime.peek()
    return rt is not None and rt.state.connection == "connected"


class IN2N_OT_report(bpy.types.Operator):
    """Show a message as a Blender report (used by the background timer, which has no operator of its own)"""

    bl_idname = "in2n.report"
    bl_label = "in2n Report"
    bl_options = {"INTERNAL"}

    level: EnumProperty(items=[(x, x, "") for x in ("INFO", "WARNING", "ERROR")], default="INFO")  # type: ignore[valid-type]
    message: StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        self.report({self.level}, self.message)
        return {"FINISHED"}


class IN2N_OT_connect(bpy.types.Operator):
    """Connect to the backend (connection file or address) and pick up its running jobs"""

    bl_idname = "in2n.connect"
    bl_label = "Connect"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = context.scene.in2n
        rt = runtime.peek()
        if rt is not None and rt.state.connection in ("connecting", "connected"):
            cls.poll_message_set("Already connected (or connecting): disconnect first")
            return False
        if settings.connection_mode == "FILE" and not settings.connection_file:
            cls.poll_message_set("Choose the backend's connection file (or connect by address)")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.in2n
        if settings.connection_mode == "FILE":
            path = bpy.path.abspath(settings.connection_file)
            try:  # a small JSON file: read here too, so a remote backend is refused before the worker connects
                host = protocol.read_connection_file(path).host
            except protocol.ConnectionFileError:
                host = "127.0.0.1"  # missing or not written yet: the worker waits for it and says what is wrong
            if not self._online_access_allows(host):
                return {"CANCELLED"}
            command = api.Connect(connection_file=path)
        else:
            key = context.window_manager.in2n_key
            if not self._online_access_allows(settings.host):
                return {"CANCELLED"}
            if not key and not protocol.is_loopback(settings.host):
                self.report({"ERROR"}, "Connect failed: a key is required for a backend on another machine")
                return {"CANCELLED"}
            command = api.Connect(info=protocol.ConnectionInfo(host=settings.host, port=settings.port, key=key))
        runtime.get().submit(command)
        return {"FINISHED"}

    def _online_access_allows(self, host: str) -> bool:
        """Blender's "Allow Online Access" preference governs any connection beyond this machine, whether the
        address was typed in or read from a connection file."""
        if protocol.is_loopback(host) or bpy.app.online_access:
            return True
        self.report({"ERROR"}, f"Connect failed: {host} is not this machine and online access is disabled "
                               "(Preferences > System > Network)")
        return False


class IN2N_OT_disconnect(bpy.types.Operator):
    """Close the connection; jobs keep running on the backend and Connect picks them up again"""

    bl_idname = "in2n.disconnect"
    bl_label = "Disconnect"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        rt = runtime.peek()
        if rt is None or rt.state.connection == "disconnected":
            cls.poll_message_set("Not connected")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        runtime.get().submit(api.Disconnect())
        return {"FINISHED"}


class IN2N_OT_start_local_backend(bpy.types.Operator):
    """Start 'python -m backend serve' with the Python set in the add-on preferences, then connect to it"""

    bl_idname = "in2n.start_local_backend"
    bl_label = "Start local backend"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        prefs = preferences(context)
        if prefs is None or not prefs.backend_python:
            cls.poll_message_set("Set the backend Python in the add-on preferences first")
            return False
        rt = runtime.peek()
        if rt is not None and rt.local_backend is not None and rt.local_backend.poll() is None:
            cls.poll_message_set("A local backend started from this Blender session is already running")
            return False
        if rt is not None and rt.state.connection in ("connecting", "connected"):
            cls.poll_message_set("Disconnect from the current backend first")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        prefs = preferences(context)
        assert prefs is not None
        folder = runtime.scratch_dir("backend")
        config = LocalBackendConfig(
            python=bpy.path.abspath(prefs.backend_python), connection_file=folder / "connection.json",
            log_file=folder / "backend.log", backend_root=bpy.path.abspath(prefs.backend_root).rstrip("/\\"),
            extra_args=shlex.split(prefs.backend_args))
        try:
            process = start_local_backend(config)
        except BackendStartError as exc:
            self.report({"ERROR"}, f"Start local backend failed: {exc}")
            return {"CANCELLED"}
        rt = runtime.get()
        rt.local_backend = process
        settings = context.scene.in2n
        settings.connection_mode, settings.connection_file = "FILE", str(config.connection_file)
        rt.submit(api.Connect(connection_file=str(config.connection_file), wait_s=120.0, process=process,
                              log_file=str(config.log_file)))
        self.report({"INFO"}, f"Starting the backend (log: {config.log_file})")
        return {"FINISHED"}


class IN2N_OT_stop_local_backend(bpy.types.Operator):
    """Stop the backend this Blender session started (running jobs are stopped too)"""

    bl_idname = "in2n.stop_local_backend"
    bl_label = "Stop local backend"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        rt = runtime.peek()
        if rt is None or rt.local_backend is None or rt.local_backend.poll() is not None:
            cls.poll_message_set("No local backend started from this session is running")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        rt = runtime.get()
        assert rt.local_backend is not None
        rt.submit(api.Disconnect())
        rt.local_backend.terminate()
        try:
            rt.local_backend.wait(10)
        except Exception:
            rt.local_backend.kill()
        rt.local_backend = None
        self.report({"INFO"}, "Local backend stopped")
        return {"FINISHED"}


CLASSES = (IN2N_OT_report, IN2N_OT_connect, IN2N_OT_disconnect, IN2N_OT_start_local_backend, IN2N_OT_stop_local_backend)
