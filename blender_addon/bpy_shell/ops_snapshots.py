"""Operators on the followed job's NeRF snapshots: import one as geometry (the backend exports it on request, with
progress, while the job runs or after it ended), pin or delete one, continue a stopped job, start a new edit from one."""

from __future__ import annotations

import dataclasses

import bpy
from bpy.props import BoolProperty, IntProperty

from ..core import worker_api as api
from ..core.protocol_link import protocol
from . import runtime
from .ops_edit import edit_request

m = protocol.messages


class IN2N_OT_refresh_snapshots(bpy.types.Operator):
    """List the followed job's snapshots again (they live on the backend: nothing is lost by closing Blender)"""

    bl_idname = "in2n.refresh_snapshots"
    bl_label = "Refresh snapshots"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        rt = runtime.peek()
        if rt is None or rt.state.job is None or not rt.state.can("nerf_snapshot_list_request"):
            cls.poll_message_set("Follow a job on a backend that keeps snapshots")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        rt = runtime.get()
        assert rt.state.job is not None
        rt.submit(api.ListSnapshots(rt.state.job.job_id))
        return {"FINISHED"}


class IN2N_OT_import_snapshot(bpy.types.Operator):
    """Import this snapshot's mesh and point cloud (exported by the backend first, if it was not yet)"""

    bl_idname = "in2n.import_snapshot"
    bl_label = "Import snapshot"

    step: IntProperty(name="Step", min=0)  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        rt = runtime.get()
        view = rt.state.steering.snapshots.get(self.step)
        if view is None or rt.state.job is None:
            self.report({"ERROR"}, f"Import snapshot failed: the followed job has no snapshot at step {self.step}")
            return {"CANCELLED"}
        job_id = rt.state.job.job_id
        if view.info.geometry:  # exported already: fetch and import
            folder = runtime.scratch_dir("results", job_id, f"snapshot-{self.step}")
            rt.submit(api.FetchResults(job_id, folder, ("mesh", "pointcloud"), snapshot_step=self.step,
                                       names=tuple(a.name for a in view.info.geometry), baked=True))
        else:
            view.importing = True
            rt.submit(api.ExportSnapshot(job_id, self.step))
        self.report({"INFO"}, f"Importing snapshot {self.step}...")
        return {"FINISHED"}


class IN2N_OT_delete_snapshot(bpy.types.Operator):
    """Delete this snapshot on the backend to free its disk space"""

    bl_idname = "in2n.delete_snapshot"
    bl_label = "Delete snapshot"

    step: IntProperty(name="Step", min=0)  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        rt = runtime.get()
        if rt.state.job is None or self.step not in rt.state.steering.snapshots:
            self.report({"ERROR"}, f"Delete snapshot failed: no snapshot at step {self.step}")
            return {"CANCELLED"}
        rt.submit(api.DeleteSnapshot(rt.state.job.job_id, self.step))
        return {"FINISHED"}


class IN2N_OT_pin_snapshot(bpy.types.Operator):
    """Pin this snapshot: the job keeps it whatever its snapshot limit (unpinned, the oldest go first)"""

    bl_idname = "in2n.pin_snapshot"
    bl_label = "Pin snapshot"

    step: IntProperty(name="Step", min=0)  # type: ignore[valid-type]
    pinned: BoolProperty(name="Pinned", default=True)  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        rt = runtime.peek()
        return rt is not None and rt.state.job is not None and rt.state.can("nerf_snapshot_pin_request")

    def execute(self, context: bpy.types.Context) -> set[str]:
        rt = runtime.get()
        if rt.state.job is None or self.step not in rt.state.steering.snapshots:
            self.report({"ERROR"}, f"Pin snapshot failed: no snapshot at step {self.step}")
            return {"CANCELLED"}
        rt.submit(api.PinSnapshot(rt.state.job.job_id, self.step, self.pinned))
        return {"FINISHED"}


class IN2N_OT_continue_job(bpy.types.Operator):
    """Continue the stopped or finished job for more editing steps (from its newest checkpoint)"""

    bl_idname = "in2n.continue_job"
    bl_label = "Continue"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        rt = runtime.connected_to_a_backend_that(cls, "job_continue_request", "continues jobs")
        if rt is None:
            return False
        job = rt.state.job
        if job is None or not job.finished:
            cls.poll_message_set("Only a stopped or finished job continues")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        rt = runtime.get()
        assert rt.state.job is not None
        rt.submit(api.ContinueJob(rt.state.job.job_id, context.scene.in2n.continue_steps))
        return {"FINISHED"}


class IN2N_OT_edit_from_snapshot(bpy.types.Operator):
    """Start a new edit from this snapshot with the panel's instruction (sequential edits: "make it autumn", then
    "add snow"); the original images stay the condition unless 'Condition on' says the snapshot's renders"""

    bl_idname = "in2n.edit_from_snapshot"
    bl_label = "Edit from here"

    step: IntProperty(name="Step", min=0)  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        rt = runtime.peek()
        if rt is None or rt.state.connection != "connected" or rt.state.job is None:
            cls.poll_message_set("Follow a job first")
            return False
        if rt.state.busy:
            cls.poll_message_set("A job is running: wait for it or cancel it first")
            return False
        if not context.scene.in2n.instruction.strip():
            cls.poll_message_set("Type the next instruction first")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        rt, settings = runtime.get(), context.scene.in2n
        job = rt.state.job
        assert job is not None
        try:
            request = dataclasses.replace(
                edit_request(settings), scene_id=job.scene_id,
                start_from=m.StartFrom(job_id=job.job_id, step=self.step, condition=settings.chain_condition))
        except (protocol.ProtocolError, ValueError) as exc:
            self.report({"ERROR"}, f"Edit from snapshot failed: {exc}")
            return {"CANCELLED"}
        rt.submit(api.StartChainedEdit(request))
        self.report({"INFO"}, f"New edit from snapshot {self.step} of job {job.job_id}")
        return {"FINISHED"}


CLASSES = (IN2N_OT_refresh_snapshots, IN2N_OT_import_snapshot, IN2N_OT_pin_snapshot, IN2N_OT_delete_snapshot,
           IN2N_OT_continue_job, IN2N_OT_edit_from_snapshot)
