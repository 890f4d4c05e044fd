"""Settings: per-scene ``Scene.in2n`` (a PropertyGroup), add-on preferences (backend Python), and the session-only
backend key (``WindowManager.in2n_key``: never saved in a .blend).

The edit settings take their names and defaults from the protocol (``protocol.messages``), the one place they are
defined for the panel, the CLI, the server and the engine.
"""

from __future__ import annotations

import dataclasses

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ..core.protocol_link import protocol
from . import ADDON_ID

m = protocol.messages
REQUEST = {f.name: f.default for f in dataclasses.fields(m.EditStartRequest)}
SCHEDULE = m.Schedule()
SNAPSHOTS = m.SnapshotSettings()
PREVIEW = m.PreviewSettings()
INSTRUCTION_PREVIEW = m.InstructionPreviewRequest(instruction="x", image=m.ImageInfo("uint8", [1, 1, 3]))


def scales_text(scales: list[float]) -> str:
    return ", ".join(f"{scale:g}" for scale in scales)


def preset_items(self: object, context: bpy.types.Context | None) -> list[tuple[str, str, str]]:
    return [(name, name.title(), preset.description) for name, preset in m.PRESETS.items()]


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
    # --- backend (the key is the window manager's: never written into the .blend)
    connection_mode: EnumProperty(  # type: ignore[valid-type]
        name="Connect with", items=[("FILE", "Connection file", "Host, port and key from the server's file"),
                                    ("ADDRESS", "Address", "Host, port and key typed in")], default="FILE")
    connection_file: StringProperty(name="Connection file", subtype="FILE_PATH")  # type: ignore[valid-type]
    host: StringProperty(name="Host", default="127.0.0.1")  # type: ignore[valid-type]
    port: IntProperty(name="Port", default=5555, min=1, max=65535)  # type: ignore[valid-type]
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

    # --- edit (names and defaults: the protocol's)
    instruction: StringProperty(name="Instruction", default="")  # type: ignore[valid-type]
    preset: EnumProperty(name="Preset", items=preset_items,  # type: ignore[valid-type]
                         description="A consistent set of edit settings for the backend's hardware")
    guidance_scale: FloatProperty(name="Text guidance", default=REQUEST["guidance_scale"], min=0.0, max=100.0)  # type: ignore[valid-type]
    image_guidance_scale: FloatProperty(name="Image guidance", default=REQUEST["image_guidance_scale"],  # type: ignore[valid-type]
                                        min=0.0, max=100.0)
    reconstruction_steps: IntProperty(name="Reconstruction steps", default=SCHEDULE.reconstruction_steps, min=0)  # type: ignore[valid-type]
    total_steps: IntProperty(name="Edit steps", default=SCHEDULE.total_steps, min=1)  # type: ignore[valid-type]
    edit_every_n_steps: IntProperty(name="Edit every n steps", default=SCHEDULE.edit_every_n_steps, min=1)  # type: ignore[valid-type]
    images_per_edit: IntProperty(name="Images per edit", default=SCHEDULE.images_per_edit, min=1)  # type: ignore[valid-type]
    ddim_steps: IntProperty(name="Diffusion steps", default=SCHEDULE.ddim_steps, min=1, max=1000)  # type: ignore[valid-type]
    memory_mode: EnumProperty(  # type: ignore[valid-type]
        name="Memory", items=[("in2n", "Full (fp32 + LPIPS)", ""), ("in2n-small", "Small (fp16, offload)", ""),
                              ("in2n-tiny", "Tiny (fp16, no LPIPS)", "")], default=REQUEST["memory_mode"])
    preview_rate: FloatProperty(name="Preview rate (Hz)", default=PREVIEW.max_rate_hz, min=0.01, max=60.0)  # type: ignore[valid-type]
    preview_max_side: IntProperty(name="Preview size", default=PREVIEW.max_side, min=8, max=4096)  # type: ignore[valid-type]
    seed: IntProperty(name="Seed", default=REQUEST["seed"], min=0)  # type: ignore[valid-type]
    snapshot_every: IntProperty(  # type: ignore[valid-type]
        name="Snapshot every", default=SNAPSHOTS.every_n_steps, min=0,
        description="Keep a NeRF snapshot every n editing steps (one is always kept after reconstruction and at the "
                    "end): any of them can be imported or edited further")
    snapshot_views: IntProperty(name="Snapshot views", default=SNAPSHOTS.views, min=1, max=64)  # type: ignore[valid-type]
    engine_overrides: StringProperty(  # type: ignore[valid-type]
        name="Engine overrides", description="Advanced: JSON object of backend engine settings")

    # --- what Blender knows (rendered views only)
    edit_scope: EnumProperty(  # type: ignore[valid-type]
        name="Edit", items=[("ALL", "Whole scene", "The editor may change everything in view"),
                            ("SELECTED", "Selected objects only",
                             "Each view's mask of the selected objects keeps the edit on them; the geometry comes "
                             "back inside their bounds only")], default="ALL")
    use_depth: BoolProperty(  # type: ignore[valid-type]
        name="Depth from Blender", default=REQUEST["use_depth"],
        description="Render each view's depth too and supervise the NeRF with it (fewer steps, fewer floaters)")
    depth_while_editing: BoolProperty(  # type: ignore[valid-type]
        name="Depth while editing", default=REQUEST["depth_while_editing"],
        description="Keep Blender's depth holding the NeRF to your scene's surfaces while it is edited, not only "
                    "while it is reconstructed. Off lets edits that change shape (grow, move, add) take hold")
    region_margin: FloatProperty(  # type: ignore[valid-type]
        name="Margin", default=0.1, min=0.0, max=2.0, subtype="FACTOR",
        description="Room around the selected objects' bounds the geometry may use, as a fraction of their size")
    result: EnumProperty(  # type: ignore[valid-type]
        name="Result", items=[
            ("BAKED", "Edited appearance on my objects",
             "A copy of each selected mesh, same geometry and place, with the edit baked into a texture"),
            ("GEOMETRY", "New geometry from the NeRF",
             "A mesh and point cloud reconstructed from the edited NeRF (for edits that change shape)"),
            ("BOTH", "Both", "The baked copies and the NeRF's geometry")],
        default="BAKED", description="What an edit of selected objects gives back (a whole-scene edit or a capture "
                                     "gives the NeRF's geometry)")
    bake_resolution: IntProperty(  # type: ignore[valid-type]
        name="Texture size", default=m.GeometrySettings().bake_resolution, min=64, max=8192,
        description="Side in pixels of the texture baked onto each selected object")
    bake_relight: BoolProperty(  # type: ignore[valid-type]
        name="Relight", default=False,
        description="Use the baked colour as a Principled base colour, lit by the scene's lights (off: shown as the "
                    "NeRF saw it, its lighting included)")
    hide_originals: BoolProperty(  # type: ignore[valid-type]
        name="Hide originals", default=True,
        description="After importing the edit of the selected objects, hide the originals (viewport and render)")
    textured_mesh: BoolProperty(  # type: ignore[valid-type]
        name="Textured mesh", default=m.GeometrySettings().textured,
        description="A UV-textured mesh (renders like the NeRF in Eevee / Cycles) instead of vertex colours")
    max_faces: IntProperty(  # type: ignore[valid-type]
        name="Max faces", default=m.GeometrySettings().max_faces, min=0,
        description="Decimate the mesh to at most this many triangles (0: as reconstructed)")

    # --- try it in 2D first
    trial_guidance_scales: StringProperty(  # type: ignore[valid-type]
        name="Text scales", default=scales_text(INSTRUCTION_PREVIEW.guidance_scales),
        description="Text guidance scales of the preview grid's columns, comma-separated")
    trial_image_guidance_scales: StringProperty(  # type: ignore[valid-type]
        name="Image scales", default=scales_text(INSTRUCTION_PREVIEW.image_guidance_scales),
        description="Image guidance scales of the preview grid's rows, comma-separated")
    trial_view: EnumProperty(  # type: ignore[valid-type]
        name="View", items=[("ACTIVE", "Active camera", "Render the scene's active camera"),
                            ("TRAINING", "Training view", "A camera of the chosen collection (its photo for a capture)")],
        default="ACTIVE")
    trial_view_index: IntProperty(name="Training view", default=0, min=0,  # type: ignore[valid-type]
                                  description="Index of the training camera (in the collection, by name)")

    # --- snapshots, continue and chain
    continue_steps: IntProperty(name="More steps", default=1000, min=0,  # type: ignore[valid-type]
                                description="Editing steps a stopped or finished job runs on for")
    chain_condition: EnumProperty(  # type: ignore[valid-type]
        name="Condition on", items=[("original", "Original images", "The capture's photos (the paper's grounding)"),
                                    ("renders", "Snapshot renders", "The snapshot's renders: build on that edit")],
        default="original")

    # --- preview and results
    show_preview_in_camera: BoolProperty(  # type: ignore[valid-type]
        name="Preview behind its camera", default=True,
        description="Show the live preview as the background of the camera it was rendered from, while the job runs")
    import_mesh: BoolProperty(name="Mesh", default=True)  # type: ignore[valid-type]
    import_pointcloud: BoolProperty(name="Point cloud", default=True)  # type: ignore[valid-type]
    import_textures: BoolProperty(  # type: ignore[valid-type]
        name="Edited photos on image planes", default=False,
        description="Swap the capture's image planes to the edited images")


CLASSES = (IN2N_Preferences, IN2N_SceneSettings)


def register_properties() -> None:
    bpy.types.Scene.in2n = PointerProperty(type=IN2N_SceneSettings)
    # window-manager properties are not saved with the .blend: the key stays in this session
    bpy.types.WindowManager.in2n_key = StringProperty(  # type: ignore[attr-defined]
        name="Key", subtype="PASSWORD", options={"SKIP_SAVE"},
        description="HMAC key from the server's connection file (kept for this session only, never in the .blend)")


def unregister_properties() -> None:
    del bpy.types.WindowManager.in2n_key  # type: ignore[attr-defined]
    del bpy.types.Scene.in2n


def preferences(context: bpy.types.Context) -> IN2N_Preferences | None:
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None
