"""What Blender knows about each view, rendered beside it: z-depth and the selected objects' mask.

One extra render per view with a material override (an emission shader whose colour is the Camera Data node's
View Z Depth and whether the Object Info node's pass index marks a selected object), into a float EXR: exact values
(Cycles, 1 sample, no denoising, a tiny pixel filter; checked on Blender 4.2 and 5.2), transparent film (nothing
hit: 0). Everything is put back after the render. The EXR is read back into the depth (``float32 [h, w]``, scene
units) and mask (``uint8 [h, w]``, 255 inside) the upload sends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import numpy as np

MATERIAL = "in2n depth and mask"
SELECTED_INDEX = 1
"""The pass index marking the selected objects during the pass."""
EXR_FORMAT = ("OPEN_EXR", "RGBA", "32")


def aux_material() -> bpy.types.Material:
    """Emission of (z-depth, selected, 0): the one material the pass overrides every object with."""
    material = bpy.data.materials.get(MATERIAL)
    if material is not None:
        return material
    material = bpy.data.materials.new(MATERIAL)
    if bpy.app.version < (5, 0, 0):  # always node-based from 5.0
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    camera, info = nodes.new("ShaderNodeCameraData"), nodes.new("ShaderNodeObjectInfo")
    combine, emission = nodes.new("ShaderNodeCombineXYZ"), nodes.new("ShaderNodeEmission")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(camera.outputs["View Z Depth"], combine.inputs["X"])
    links.new(info.outputs["Object Index"], combine.inputs["Y"])
    links.new(combine.outputs["Vector"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    return material


def prepare(scene: bpy.types.Scene, selected: list[bpy.types.Object]) -> Callable[[], Callable[[], None]]:
    """A :class:`~.render_session.Shot` ``prepare``: set the scene up for the pass, return what restores it."""

    def apply() -> Callable[[], None]:
        render, cycles, layer = scene.render, scene.cycles, bpy.context.view_layer
        saved: dict[str, Any] = {"engine": render.engine, "film_transparent": render.film_transparent,
                 "override": layer.material_override,
                 "cycles": {name: getattr(cycles, name) for name in
                            ("samples", "use_denoising", "use_adaptive_sampling", "filter_width")},
                 "pass_index": {obj.name: obj.pass_index for obj in scene.objects}}
        render.engine, render.film_transparent = "CYCLES", True  # type: ignore[assignment]  # the stubs list Eevee only
        cycles.samples, cycles.use_denoising, cycles.use_adaptive_sampling, cycles.filter_width = 1, False, False, 0.01
        layer.material_override = aux_material()
        chosen = set(selected)
        for obj in scene.objects:
            obj.pass_index = SELECTED_INDEX if obj in chosen else 0

        def restore() -> None:
            render.engine, render.film_transparent = saved["engine"], saved["film_transparent"]
            layer.material_override = saved["override"]
            for name, value in saved["cycles"].items():
                setattr(cycles, name, value)
            for obj in scene.objects:
                obj.pass_index = saved["pass_index"].get(obj.name, obj.pass_index)

        return restore

    return apply


@dataclass
class ViewKnowledge:
    depth: np.ndarray
    """``float32 [h, w]`` z-depth in scene units, 0 where nothing was hit."""
    mask: np.ndarray
    """``uint8 [h, w]``, 255 on the selected objects."""


def read(path: Path) -> ViewKnowledge:
    """The pass's EXR as depth and mask (row 0 = top)."""
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        width, height = image.size
        pixels = np.empty(width * height * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    rgba = pixels.reshape(height, width, 4)[::-1]
    hit = rgba[..., 3] > 0.5
    depth = np.where(hit, rgba[..., 0], 0.0).astype(np.float32)
    mask = np.where(hit & (rgba[..., 1] > 0.5), 255, 0).astype(np.uint8)
    return ViewKnowledge(np.ascontiguousarray(depth), np.ascontiguousarray(mask))


def region(objects: list[bpy.types.Object], margin: float) -> tuple[list[float], list[float]]:
    """The objects' world-space bounds, grown by ``margin`` times their size on every side."""
    corners = [np.array(obj.matrix_world, dtype=np.float64) @ np.c_[np.array(obj.bound_box), np.ones(8)].T
               for obj in objects]
    points = np.concatenate([c[:3].T for c in corners])
    low, high = points.min(axis=0), points.max(axis=0)
    grow = margin * float(np.linalg.norm(high - low))
    return (low - grow).tolist(), (high + grow).tolist()
