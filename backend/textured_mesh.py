"""A UV-textured mesh for Blender: nerfstudio's texture export (xatlas unwrap, each texel rendered from the NeRF
along the surface normal), then its OBJ moved from nerfstudio's frame into the scene's own.

A vertex-coloured Poisson mesh looks blurry in Eevee / Cycles (one colour a vertex); the texture carries the NeRF's
detail between vertices, so the imported object renders like the NeRF.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from backend import atomic
from backend.nerf.frames import DataparserTransform

MATERIAL_FILES = ("material_0.mtl", "material_0.png")
"""What nerfstudio writes beside ``mesh.obj`` (the OBJ names the material file, the material the texture)."""


def export_textured(pipeline, mesh, transform: DataparserTransform, folder: Path, texture_size: int
                    ) -> tuple[Path, list[Path]]:
    """``folder/mesh.obj`` (+ material and texture) of an open3d mesh in nerfstudio's frame; returns the OBJ and
    the files it needs."""
    from nerfstudio.exporter.exporter_utils import Mesh
    from nerfstudio.exporter.texture_utils import export_textured_mesh

    from backend.nerf.setup import quiet_nerfstudio_console

    mesh.compute_vertex_normals()
    device = pipeline.device
    nerf_mesh = Mesh(vertices=torch.from_numpy(np.asarray(mesh.vertices)).float().to(device),
                     faces=torch.from_numpy(np.asarray(mesh.triangles)).long().to(device),
                     normals=torch.from_numpy(np.asarray(mesh.vertex_normals)).float().to(device))
    folder.mkdir(parents=True, exist_ok=True)
    pipeline.eval()
    try:
        with quiet_nerfstudio_console(), contextlib.redirect_stdout(None):
            export_textured_mesh(nerf_mesh, pipeline, folder, px_per_uv_triangle=None, unwrap_method="xatlas",
                                 num_pixels_per_side=texture_size)
    finally:
        pipeline.train()
    obj = folder / "mesh.obj"
    obj_to_input_frame(obj, transform)
    return obj, [folder / name for name in MATERIAL_FILES]


def obj_to_input_frame(path: Path, transform: DataparserTransform) -> None:
    """Rewrite an OBJ's vertices (``v``) and normals (``vn``) from nerfstudio's frame into the input frame."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    vertices = [i for i, line in enumerate(lines) if line.startswith("v ")]
    normals = [i for i, line in enumerate(lines) if line.startswith("vn ")]

    def values(indices: list[int]) -> np.ndarray:
        return np.array([[float(x) for x in lines[i].split()[1:4]] for i in indices], dtype=np.float64).reshape(-1, 3)

    for indices, tag, mapped in ((vertices, "v", transform.points_to_input(values(vertices))),
                                 (normals, "vn", transform.normals_to_input(values(normals)))):
        for i, (x, y, z) in zip(indices, mapped):
            lines[i] = f"{tag} {x:.7g} {y:.7g} {z:.7g}\n"
    atomic.write_bytes(path, "".join(lines).encode("utf-8"))
