"""A mesh of the NeRF by fusing its rendered depth from the training views into a TSDF (what ``ns-export tsdf``
does, with nerfstudio's own :class:`~nerfstudio.exporter.tsdf_utils.TSDF`), inside the export region.

Poisson over sampled points closes every surface into a watertight skin, inventing geometry where no camera looked
and smoothing away what the points were too few to show. Fusing depth keeps what the views saw: each voxel is free
space or surface by the renders' depths; pixels the NeRF leaves transparent add nothing; voxels no view observed are
dropped from the mesh instead of becoming the walls of the observed region.
"""

from __future__ import annotations

import numpy as np
import torch

MIN_OPACITY = 0.5
"""Pixels whose accumulated opacity is below this integrate nothing (their depth is not a surface's)."""


def region_aabb(crop) -> torch.Tensor:  # crop: OrientedBox | None
    """``[2, 3]`` axis-aligned bounds (nerfstudio's frame) around the export region, or nerfstudio's [-1, 1] box."""
    if crop is None:
        return torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    signs = torch.tensor([[sx, sy, sz] for sx in (-0.5, 0.5) for sy in (-0.5, 0.5) for sz in (-0.5, 0.5)])
    corners = crop.T.float() + (signs * crop.S.float()) @ crop.R.float().T
    return torch.stack([corners.min(0).values, corners.max(0).values])


@torch.no_grad()
def tsdf_mesh(pipeline, crop, resolution: int, should_stop=lambda: False):  # -> open3d.geometry.TriangleMesh
    """Fuse the training views' rendered depth (and colour) inside ``crop``; the longest side of the region gets
    ``resolution`` voxels. Raises ValueError when the views show no surface there."""
    import open3d as o3d
    from nerfstudio.exporter.tsdf_utils import TSDF

    aabb = region_aabb(crop)
    extent = aabb[1] - aabb[0]
    dims = torch.clamp((extent / extent.max() * resolution).round(), min=8).long()
    tsdf = TSDF.from_aabb(aabb, volume_dims=dims)
    cameras = pipeline.datamanager.train_dataset.cameras
    model = pipeline.model
    for view in range(len(cameras)):
        if should_stop():
            raise ValueError("stopped")
        camera = cameras[view : view + 1].to(pipeline.device)
        outputs = model.get_outputs_for_camera(camera)
        depth = torch.where(outputs["accumulation"] >= MIN_OPACITY, outputs["depth"], torch.zeros_like(outputs["depth"]))
        c2w = torch.eye(4)[None]
        c2w[:, :3, :] = camera.camera_to_worlds.cpu()
        tsdf.integrate_tsdf(c2w, camera.get_intrinsics_matrices().cpu(), depth.cpu().permute(2, 0, 1)[None],
                            color_images=outputs["rgb"].clamp(0, 1).cpu().permute(2, 0, 1)[None])
    observed = tsdf.weights > 0
    if not bool((observed & (tsdf.values < 1)).any()):
        raise ValueError("the views' depth shows no surface inside the export region")
    mesh = tsdf.get_mesh()
    vertices, faces = mesh.vertices.double().numpy(), mesh.faces.long().numpy()
    # vertices next to voxels no view observed are the edge of what the cameras saw, not a surface
    index = np.clip(np.round((vertices - tsdf.origin.numpy()) / tsdf.voxel_size.numpy()).astype(int), 0,
                    np.asarray(dims) - 1)
    seen = observed.numpy()[index[:, 0], index[:, 1], index[:, 2]]
    faces = faces[seen[faces].all(axis=1)]
    if crop is not None:
        inside = crop.within(torch.from_numpy(vertices).float()).numpy()
        faces = faces[inside[faces].all(axis=1)]
    if not len(faces):
        raise ValueError("the fused surface lies outside what the views observed in the export region")
    result = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices), o3d.utility.Vector3iVector(faces))
    result.vertex_colors = o3d.utility.Vector3dVector(mesh.colors.double().clamp(0, 1).numpy())
    result.remove_unreferenced_vertices()
    return result
