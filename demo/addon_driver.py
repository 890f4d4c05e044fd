"""Drive the in2n-blender add-on the way a user does, headless: install the extension zip, set its preferences,
press its buttons (operators), and run its timer callback.

Blender's ``bpy.app.timers`` never fire in ``bpy`` module mode (there is no window-manager loop), so the driver calls
the add-on's timer callback (``runtime.pump``) itself between checks, exactly what the timer would do in Blender.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import bpy

from demo.blender_process import check_stop, quiet_stdout

ADDON_MODULE = "bl_ext.user_default.in2n_blender"
"""Module name of the extension once installed into Blender's ``user_default`` repository."""


class DemoError(RuntimeError):
    """A demo step failed; the message says which and why (and where the logs are)."""


def install_zip(zip_path: Path) -> ModuleType:
    """Install and enable an extension zip from disk (Preferences > Get Extensions > Install from Disk).

    Blender answers ``{'FINISHED'}`` even when it refuses a zip (e.g. Blender 4.2 and a zip for 5.1+), so success is
    judged by the add-on really being enabled; a refusal raises here, naming the zip and Blender's version."""
    result = bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default",
                                                      enable_on_install=True)
    enabled = ADDON_MODULE in bpy.context.preferences.addons and ADDON_MODULE in sys.modules
    if result != {"FINISHED"} or not enabled:
        raise DemoError(f"Blender {bpy.app.version_string} did not install and enable {zip_path.name} ({result}); "
                        "see Blender's log above for its reason")
    return sys.modules[ADDON_MODULE]


def install_addon(work_dir: Path) -> ModuleType:
    """Build the extension zips with the project's packager and install the one for this Blender version."""
    from blender_addon import packaging

    with tempfile.TemporaryDirectory(prefix="in2n_demo_dist_", dir=work_dir) as dist:
        zips = packaging.build(Path(dist), validate=False)
        return install_zip(packaging.zip_for(zips, bpy.app.version))


def set_preferences(backend_python: str, backend_root: Path, extra_args: str = "") -> None:
    """The add-on preferences a user fills in once: the backend's Python and the folder holding ``backend``."""
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    prefs.backend_python, prefs.backend_root, prefs.backend_args = backend_python, str(backend_root), extra_args


class AddonDriver:
    """Presses the add-on's buttons and pumps its timer callback; raises :class:`DemoError` with the add-on's own
    error reports when something fails."""

    def __init__(self, addon: ModuleType, poll_s: float = 0.05) -> None:
        self.addon = addon
        self.runtime = addon.bpy_shell.runtime
        self.poll_s = poll_s

    @property
    def rt(self):  # the add-on's live runtime (created by the first operator that needs it)
        return self.runtime.get()

    def errors(self) -> list[str]:
        return [report.message for report in self.rt.reports if report.level == "ERROR"]

    def pump_until(self, condition: Callable[[], bool], timeout_s: float, what: str,
                   on_tick: Callable[[], None] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            check_stop()
            self.runtime.pump()
            if on_tick is not None:
                on_tick()
            if condition():
                return
            if time.monotonic() > deadline:
                raise DemoError(f"{what}: not done within {timeout_s:.0f} s; add-on reports: {self.errors()[-3:]}")
            time.sleep(self.poll_s)

    def press(self, operator: Callable[[], set[str]], name: str) -> None:
        """Run an operator; a cancelled one raises with its report (e.g. the poll message or the error)."""
        try:
            result = operator()
        except RuntimeError as exc:  # poll() failed: Blender raises with the poll message
            raise DemoError(f"{name}: {exc}".strip()) from None
        if result != {"FINISHED"}:
            raise DemoError(f"{name} was cancelled: {self.errors()[-1:] or result}")

    def backend_log(self) -> Path:
        return self.runtime.scratch_dir("backend") / "backend.log"

    def start_local_backend(self, timeout_s: float) -> None:
        """The panel's "Start local backend" button, then wait until the add-on is connected."""
        self.press(bpy.ops.in2n.start_local_backend, "Start local backend")
        state = self.rt.state
        self.pump_until(lambda: state.connection in ("connected", "disconnected", "lost"), timeout_s,
                        "starting the backend")
        if state.connection != "connected":
            raise DemoError(f"the backend did not start: {state.last_error or self.errors()[-1:]}\n"
                            f"backend log: {self.backend_log()}")

    def edit(self, timeout_s: float, on_tick: Callable[[], None]) -> None:
        """The Edit button (renders the views, uploads them, starts the job), then follow the job to its end."""
        with quiet_stdout():  # the operator renders every view; Blender prints a line per render
            self.press(bpy.ops.in2n.edit, "Edit")
        state = self.rt.state

        def finished() -> bool:
            if state.connection != "connected":
                raise DemoError(f"lost the backend during the edit: {state.last_error}\nbackend log: {self.backend_log()}")
            if state.job is None and state.upload is None and state.last_error:
                raise DemoError(f"the edit did not start: {state.last_error}")
            return state.job is not None and state.job.finished

        self.pump_until(finished, timeout_s, "the edit job", on_tick)
        job = state.job
        if job.state != "done":
            detail = job.error or job.message or job.state
            raise DemoError(f"the edit job {job.job_id} ended '{job.state}': {detail}\nbackend log: {self.backend_log()}")

    def import_result(self, timeout_s: float) -> bpy.types.Collection:
        """The Import result button; waits until the add-on has imported the downloaded files."""
        before = len(self.rt.imported)
        self.press(bpy.ops.in2n.import_result, "Import result")
        state = self.rt.state
        self.pump_until(lambda: len(self.rt.imported) > before or (state.fetch is None and bool(state.last_error)),
                        timeout_s, "importing the result")
        if len(self.rt.imported) == before:
            raise DemoError(f"Import result failed: {state.last_error}")
        return self.rt.imported[-1]

    def download_final_snapshot(self, folder: Path, timeout_s: float) -> dict[str, Path]:
        """Download the renders of the finished job's last NeRF snapshot without importing them (through the
        add-on's worker, as an import does); returns artifact name -> file."""
        from importlib import import_module

        api = import_module(f"{self.addon.__name__}.core.worker_api")
        state = self.rt.state
        if state.job is None:
            raise DemoError("no job to download results of")
        steps = [a.metadata["snapshot_step"] for a in state.job.artifacts
                 if a.kind == "other" and isinstance(a.metadata.get("snapshot_step"), int)]
        if not steps:
            return {}  # a job that kept no snapshot renders
        before, error_before = dict(state.downloaded), state.last_error
        self.rt.submit(api.FetchResults(state.job.job_id, folder, ("other",), import_files=False,
                                        snapshot_step=max(steps)))
        self.pump_until(lambda: state.downloaded != before or state.last_error not in ("", error_before),
                        timeout_s, "downloading the job's final snapshot renders")
        if state.downloaded == before:
            raise DemoError(f"downloading the job's final snapshot renders failed: {state.last_error}")
        return {name: path for name, path in state.downloaded.items() if before.get(name) != path}

    def stop_local_backend(self) -> None:
        """The "Stop local backend" button (when the backend this session started is still running)."""
        process = self.rt.local_backend
        if process is not None and process.poll() is None:
            bpy.ops.in2n.stop_local_backend()
