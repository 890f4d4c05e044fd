"""Settings: per-scene ``Scene.in2n`` (a PropertyGroup) and add-on preferences (backend Python)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from . import ADDON_ID


def _history_changed(settings: IN2N_SceneSettings, context: bpy.types.Context) -> None:
    from . import runtime

    runtime.show_history(settings.preview_history)


class IN2N_Preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    backend_python: StringProperty(  # type: ignore[valid-type]
        name="Backend Python", subtype="FILE_PATH",
        description="Python interpreter of the backend environment (torch, nerfstudio, diffusers)")
    backend_root: StringProperty(  # type: ignore[valid-type]
        name="Backend folder", subtype="DIR_PATH",
        description="Folder holding the 'backend' package, if it is not installed in that Python")
    backend_args: StringProperty(  # type: ignore[valid-type]
        name="Extra arguments", description="More 'python -m backend serve' arguments, e.g. --no-device-probe")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "backend_python")
        layout.prop(self, "backend_root")
        layout.prop(self, "backend_args")


class IN2N_SceneSettings(bpy.types.PropertyGroup):
    # --- backend
    connection_mode: EnumProperty(  # type: ignore[valid-type]
        name="Connect with", items=[("FILE", "Connection file", "Host, port and key from the server's file"),
                                    ("ADDRESS", "Address", "Host, port and key typed in")], default="FILE")
    connection_file: StringProperty(name="Connection file", subtype="FILE_PATH")  # type: ignore[valid-type]
    host: StringProperty(name="Host", default="127.0.0.1")  # type: ignore[valid-type]
    port: IntProperty(name="Port", default=5555, min=1, max=65535)  # type: ignore[valid-type]
    key: StringProperty(name="Key", subtype="PASSWORD", description="HMAC key from the server's connection file")  # type: ignore[valid-type]
    job_id: StringProperty(name="Job", description="Edit job this scene follows (kept in the .blend)")  # type: ignore[valid-type]

    # --- scene source
    source: EnumProperty(  # type: ignore[valid-type]
        name="Source", items=[("RENDER", "Render from Blender", "Render the chosen cameras with the scene's engine"),
                              ("CAPTURE", "Existing capture", "Use the photos of an imported transforms.json capture")],
        default="RENDER")
    camera_collection: PointerProperty(  # type: ignore[valid-type]
        name="Cameras", type=bpy.types.Collection, description="Collection whose cameras are rendered / uploaded")
    orbit_count: IntProperty(name="Views", default=8, min=2, max=512)  # type: ignore[valid-type]
    orbit_elevation: FloatProperty(name="Elevation", default=25.0, min=-89.0, max=89.0, subtype="NONE")  # type: ignore[valid-type]
    orbit_distance: FloatProperty(name="Distance", default=2.5, min=0.5, max=100.0,  # type: ignore[valid-type]
                                  description="Camera distance in bounding-sphere radii")
    resolution_x: IntProperty(name="Width", default=512, min=8, max=8192)  # type: ignore[valid-type]
    resolution_y: IntProperty(name="Height", default=512, min=8, max=8192)  # type: ignore[valid-type]
    render_samples: IntProperty(name="Samples", default=32, min=1, max=4096,  # type: ignore[valid-type]
                                description="Cycles samples for the training views (other engines keep theirs)")
    capture_path: StringProperty(name="Capture", subtype="FILE_PATH",  # type: ignore[valid-type]
                                 description="The capture's transforms.json (imported cameras remember their photos)")
    capture_display: EnumProperty(  # type: ignore[valid-type]
        name="Show photos as", items=[("PLANES", "Image planes", "A textured plane in front of each camera"),
                                      ("BACKGROUND", "Camera backgrounds", "Each camera's background image"),
                                      ("NONE", "Nothing", "Cameras only")], default="PLANES")

    # --- edit
    instruction: StringProperty(name="Instruction", default="")  # type: ignore[valid-type]
    guidance_scale: FloatProperty(name="Text guidance", default=7.5, min=0.0, max=100.0)  # type: ignore[valid-type]
    image_guidance_scale: FloatProperty(name="Image guidance", default=1.5, min=0.0, max=100.0)  # type: ignore[valid-type]
    reconstruction_steps: IntProperty(name="Reconstruction steps", default=30000, min=0)  # type: ignore[valid-type]
    total_steps: IntProperty(name="Edit steps", default=15000, min=1)  # type: ignore[valid-type]
    edit_every_n_steps: IntProperty(name="Edit every n steps", default=10, min=1)  # type: ignore[valid-type]
    images_per_edit: IntProperty(name="Images per edit", default=1, min=1)  # type: ignore[valid-type]
    ddim_steps: IntProperty(name="Diffusion steps", default=20, min=1, max=1000)  # type: ignore[valid-type]
    memory_mode: EnumProperty(  # type: ignore[valid-type]
        name="Memory", items=[("in2n", "Full (fp32 + LPIPS)", ""), ("in2n-small", "Small (fp16, offload)", ""),
                              ("in2n-tiny", "Tiny (fp16, no LPIPS)", "")], default="in2n")
    preview_rate: FloatProperty(name="Preview rate (Hz)", default=1.0, min=0.01, max=60.0)  # type: ignore[valid-type]
    preview_max_side: IntProperty(name="Preview size", default=256, min=8, max=4096)  # type: ignore[valid-type]
    seed: IntProperty(name="Seed", default=0, min=0)  # type: ignore[valid-type]
    engine_overrides: StringProperty(  # type: ignore[valid-type]
        name="Engine overrides", description="Advanced: JSON object of backend engine settings")

    # --- preview and results
    preview_history: IntProperty(  # type: ignore[valid-type]
        name="History", default=0, min=0, update=_history_changed,
        description="0: live preview; n: the n-th snapshot of this job (oldest first)")
    import_mesh: BoolProperty(name="Mesh", default=True)  # type: ignore[valid-type]
    import_pointcloud: BoolProperty(name="Point cloud", default=True)  # type: ignore[valid-type]
    import_textures: BoolProperty(  # type: ignore[valid-type]
        name="Edited photos on image planes", default=False,
        description="Swap the capture's image planes to the edited images")


CLASSES = (IN2N_Preferences, IN2N_SceneSettings)


def register_properties() -> None:
    bpy.types.Scene.in2n = PointerProperty(type=IN2N_SceneSettings)


def unregister_properties() -> None:
    del bpy.types.Scene.in2n


def preferences(context: bpy.types.Context) -> IN2N_Preferences | None:
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None
