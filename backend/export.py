"""Export the (edited) NeRF as a coloured point cloud and a vertex-coloured mesh, in the INPUT scene's frame.

The geometry follows nerfstudio's exporter (``ns-export pointcloud --normal-method open3d``: depth along training
rays, opacity > 0.5, crop box, open3d statistical outlier removal and normal estimation, normals turned to the
cameras; re-done here only to bound the number of ray batches, see :func:`sample_surface_points`); the mesh closes
a Poisson surface over the points (what ``ns-export poisson`` does) or fuses the NeRF's rendered depth into a TSDF
(:mod:`backend.tsdf_mesh`, what ``ns-export tsdf`` does). The results are then mapped from nerfstudio's normalised
frame back to the frame of ``transforms.json`` (:class:`backend.nerf.frames.DataparserTransform`), so they line up
with the user's cameras in Blender.

Files: binary little-endian PLY with ``float x, y, z`` and ``uchar red, green, blue`` (+ normals for the cloud), which
Blender's PLY importer reads as positions and a ``Col`` colour attribute; the mesh can also be OBJ with vertex colours.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from backend import atomic
from backend.config import OutputConfig
from backend.nerf.frames import DataparserTransform
from backend.pixels import to_uint8


@dataclass
class ExportResult:
    point_cloud: Path
    mesh: Path | None
    """None when meshing failed (``mesh_error`` says why; the point cloud stands)."""
    num_points: int
    num_vertices: int
    num_faces: int
    bounds_min: list[float]
    """Point cloud bounds in the input frame."""
    bounds_max: list[float]
    textured_mesh: Path | None = None
    """The UV-textured mesh (OBJ), when asked for."""
    extra_files: list[Path] = field(default_factory=list)
    """Files the textured mesh refers to (its material and texture image)."""
    mesh_error: str | None = None
    """Why there is no mesh, in words."""


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
OPEN3D_PREFIX = re.compile(r"\[Open3D (?:Error|WARNING|INFO)\]\s*(?:\(.*?\)\s*)?(?:\S+:\d+:\s*)?")


def plain_error(error: BaseException, limit: int = 300) -> str:
    """An exception's message for a person: no terminal colour codes, no C++ signature or source location (open3d
    puts both into its errors), one line, at most ``limit`` characters."""
    text = OPEN3D_PREFIX.sub("", ANSI_ESCAPE.sub("", str(error)))
    text = " ".join(text.split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_point_cloud_ply(path: Path, points: np.ndarray, colors: np.ndarray, normals: np.ndarray | None) -> None:
    from plyfile import PlyData, PlyElement

    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if normals is not None:
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(points), dtype=fields)
    vertices["x"], vertices["y"], vertices["z"] = points.T
    if normals is not None:
        vertices["nx"], vertices["ny"], vertices["nz"] = normals.T
    rgb = to_uint8(colors)
    vertices["red"], vertices["green"], vertices["blue"] = rgb.T
    atomic.write_with(path, lambda temporary: PlyData([PlyElement.describe(vertices, "vertex")]).write(str(temporary)))


def write_mesh(path: Path, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> None:
    """PLY (plyfile, float32 positions, uchar colours) or OBJ (trimesh, ``v x y z r g b``) by ``path``'s suffix."""
    if path.suffix == ".obj":
        import trimesh

        mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
        rgba = np.concatenate([to_uint8(colors), np.full((len(colors), 1), 255, np.uint8)], 1)
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=rgba)
        text = mesh.export(file_type="obj", include_normals=False)
        atomic.write_bytes(path, text.encode() if isinstance(text, str) else bytes(text))
        return
    from plyfile import PlyData, PlyElement

    vertex = np.empty(len(vertices), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                            ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = vertices.T
    vertex["red"], vertex["green"], vertex["blue"] = to_uint8(colors).T
    face = np.empty(len(faces), dtype=[("vertex_indices", "i4", (3,))])
    face["vertex_indices"] = faces
    data = PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")])
    atomic.write_with(path, lambda temporary: data.write(str(temporary)))


class ExportError(RuntimeError):
    """The NeRF has too little opaque content to export (e.g. far too few training steps)."""


class ExportCancelled(ExportError):
    """The job was stopped while exporting."""


RAYS_PER_POINT = 4
"""Ray budget per wanted point: enough when at least a quarter of the rays end on opaque content inside the box."""
PROBE_RAYS = 32768
"""Rays shot before judging whether the NeRF is opaque enough to export at all."""
MIN_OPAQUE_FRACTION = 0.01
"""Below this fraction of opaque rays (after the probe) the export stops: the NeRF is still mostly transparent."""
POINTS_PER_PIXEL = 16
"""At most this many points per training pixel: rays beyond that re-sample the same surface (a 32 px scene of 8 views
gets 131k points, not a million)."""


@dataclass
class ExportProgress:
    """Where :func:`sample_surface_points` stands (reported after every ray chunk)."""

    rays_done: int
    rays_total: int
    """The ray budget: ``RAYS_PER_POINT`` x the points wanted."""
    points_found: int
    points_wanted: int


    @property
    def finished(self) -> bool:
        return self.rays_done >= self.rays_total or self.points_found >= self.points_wanted

    @property
    def fraction(self) -> float:
        """How far along: rays shot of the budget, or points found of those wanted, whichever is further."""
        return min(1.0, max(self.rays_done / max(self.rays_total, 1), self.points_found / max(self.points_wanted, 1)))

    def eta_s(self, elapsed_s: float) -> float | None:
        """Seconds left at the rate seen so far (the budget is an upper bound: the points wanted may be found
        sooner, at the rate of points per ray seen so far)."""
        if not self.rays_done:
            return None
        rate = self.points_found / self.rays_done
        rays_needed = min(self.rays_total, self.points_wanted / rate) if rate > 0 else self.rays_total
        return elapsed_s / self.rays_done * max(0.0, rays_needed - self.rays_done)


def points_wanted(num_points: int, num_pixels: int) -> int:
    """The points to export: ``num_points``, capped at ``POINTS_PER_PIXEL`` per training pixel."""
    return max(1, min(num_points, POINTS_PER_PIXEL * num_pixels))


@torch.no_grad()
def sample_surface_points(pipeline, num_points: int, crop, *, rays_per_chunk: int, should_stop=lambda: False,
                          on_progress=lambda progress: None, seed: int = 0):
    """Depth-along-ray points of opaque rays, as nerfstudio's ``generate_point_cloud`` computes them.

    Rays are drawn uniformly over the training cameras' pixels that can see ``crop`` (:func:`pixels_seeing_box`)
    in chunks of ``rays_per_chunk`` (the eval chunk size, not the training batch), until ``num_points`` points are
    found or the budget of ``RAYS_PER_POINT`` rays a point is spent. nerfstudio's loop runs until it has enough
    points, which never ends on a mostly transparent NeRF; this one raises :class:`ExportError` after ``PROBE_RAYS``
    when fewer than ``MIN_OPAQUE_FRACTION`` of the rays were opaque, and returns early when ``should_stop()``.
    Returns ``(points, colours, view directions)`` as ``N 3`` tensors in nerfstudio's frame.
    """
    datamanager = pipeline.datamanager
    num_rows, height, width = datamanager.image_batch["image"].shape[:3]
    cameras = datamanager.image_batch["image_idx"].long()
    device = datamanager.device
    generator = torch.Generator().manual_seed(seed)
    boxes = torch.tensor([[0, height, 0, width]]).repeat(num_rows, 1)
    if crop is not None:  # rays only from the pixels that can see the box: a small selected object gets them all
        boxes = pixels_seeing_box(datamanager.train_dataset.cameras, crop, height, width)[cameras.cpu()]
    areas = ((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])).double()
    if not bool((areas > 0).any()):
        raise ExportError("no training camera sees the export region: nothing of it was photographed")
    budget = RAYS_PER_POINT * num_points
    points, colors, directions = [], [], []
    found = done = 0
    while done < budget and found < num_points and not should_stop():
        count = min(rays_per_chunk, budget - done)
        rows = torch.multinomial(areas, count, replacement=True, generator=generator)
        box = boxes[rows]
        y = box[:, 0] + (torch.rand(count, generator=generator) * (box[:, 1] - box[:, 0])).long()
        x = box[:, 2] + (torch.rand(count, generator=generator) * (box[:, 3] - box[:, 2])).long()
        indices = torch.stack([cameras[rows], y, x], dim=-1)
        ray_bundle = datamanager.train_ray_generator(indices.to(device))
        outputs = pipeline.model(ray_bundle)
        rgba = pipeline.model.get_rgba_image(outputs, "rgb")
        point = ray_bundle.origins + ray_bundle.directions * outputs["depth"]
        keep = rgba[..., -1] > 0.5  # opacity threshold of nerfstudio's exporter
        if crop is not None:
            with warnings.catch_warnings():  # OrientedBox.within re-wraps its own tensors with torch.tensor(...)
                warnings.simplefilter("ignore", UserWarning)
                keep &= crop.within(point)
        points.append(point[keep].cpu())
        colors.append(rgba[keep][..., :3].cpu())
        directions.append(ray_bundle.directions[keep].cpu())
        found += int(keep.sum())
        done += count
        on_progress(ExportProgress(done, budget, found, num_points))
        if done >= min(PROBE_RAYS, budget) and found < MIN_OPAQUE_FRACTION * done:
            raise ExportError(f"only {found / done:.2%} of {done} rays shot at the NeRF ended on opaque content "
                              f"inside the scene (at least {MIN_OPAQUE_FRACTION:.0%} is needed to export geometry): "
                              "the NeRF is still mostly transparent: give it more Reconstruction steps")
    if not points:
        return torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, 3)
    return torch.cat(points)[:num_points], torch.cat(colors)[:num_points], torch.cat(directions)[:num_points]


def pixels_seeing_box(cameras, box, height: int, width: int, margin_px: int = 2) -> torch.Tensor:
    """``[num_cameras, 4]`` pixel rectangles ``(y0, y1, x0, x1)``, end exclusive: where each camera's rays can meet
    the oriented ``box`` (the projection of its 8 corners, nerfstudio's pinhole convention, grown by ``margin_px``);
    the whole image when the camera stands inside or beside the box (a corner behind it). A ray from outside the
    rectangle misses the box, so nothing the crop would keep is lost."""
    signs = torch.tensor([[sx, sy, sz] for sx in (-0.5, 0.5) for sy in (-0.5, 0.5) for sz in (-0.5, 0.5)])
    corners = box.T.float() + (signs * box.S.float()) @ box.R.float().T
    c2w = cameras.camera_to_worlds.float().cpu()
    local = torch.einsum("nji,nkj->nki", c2w[:, :3, :3], corners[None] - c2w[:, None, :3, 3])  # R^T (p - t)
    depth = -local[..., 2]
    in_front = (depth > 1e-6).all(dim=1)
    depth = depth.clamp_min(1e-6)
    x = cameras.cx.float().cpu() + cameras.fx.float().cpu() * local[..., 0] / depth
    y = cameras.cy.float().cpu() - cameras.fy.float().cpu() * local[..., 1] / depth
    boxes = torch.stack([(y.min(1).values.floor() - margin_px).clamp(0, height),
                         (y.max(1).values.ceil() + margin_px).clamp(0, height),
                         (x.min(1).values.floor() - margin_px).clamp(0, width),
                         (x.max(1).values.ceil() + margin_px).clamp(0, width)], dim=-1).long()
    boxes[~in_front] = torch.tensor([0, height, 0, width])
    return boxes


def point_cloud_with_normals(points: torch.Tensor, colors: torch.Tensor, directions: torch.Tensor,
                             remove_outliers: bool):
    """open3d cloud: statistical outlier removal, estimated normals turned towards the cameras (as ns-export)."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud()
    cloud.points = o3d.utility.Vector3dVector(points.double().numpy())
    cloud.colors = o3d.utility.Vector3dVector(colors.double().clamp(0, 1).numpy())
    if remove_outliers:
        filtered, kept = cloud.remove_statistical_outlier(nb_neighbors=20, std_ratio=10.0)
        # statistics of a degenerate cloud (most points on top of each other: zero spread) call nearly every
        # point an outlier; then the cloud is kept as it is rather than emptied
        if len(kept) >= len(points) // 2:
            cloud, directions = filtered, directions[torch.as_tensor(np.asarray(kept), dtype=torch.long)]
    cloud.estimate_normals()
    normals = torch.from_numpy(np.asarray(cloud.normals)).float()
    normals[(normals * directions).sum(-1) > 0] *= -1
    cloud.normals = o3d.utility.Vector3dVector(normals.double().numpy())
    return cloud


def export_geometry(pipeline, transform: DataparserTransform, out_dir: Path, config: OutputConfig,
                    should_stop=lambda: False, *, rays_per_chunk: int = 4096,
                    on_progress=lambda progress: None) -> ExportResult:
    """Point cloud + mesh (``config.mesh_method``) of ``pipeline``'s NeRF, written to ``out_dir`` in the input frame.
    ``on_progress`` receives :class:`ExportProgress` after every ray chunk; ``should_stop()`` ends the export with
    :class:`ExportCancelled`. When meshing fails the point cloud is still written and ``mesh_error`` says why."""
    crop = crop_box(transform, config)
    images = pipeline.datamanager.image_batch["image"]
    wanted = points_wanted(config.export_num_points, int(images.shape[0] * images.shape[1] * images.shape[2]))
    pipeline.eval()
    try:
        points, colors, directions = sample_surface_points(pipeline, wanted, crop, rays_per_chunk=rays_per_chunk,
                                                           should_stop=should_stop, on_progress=on_progress)
    finally:
        pipeline.train()
    if should_stop():
        raise ExportCancelled("export cancelled")
    if len(points) < 32:
        raise ExportError(f"the NeRF produced only {len(points)} opaque points inside the scene; train longer")
    cloud = point_cloud_with_normals(points, colors, directions, config.export_remove_outliers)
    if len(cloud.points) < 32:
        raise ExportError(f"only {len(cloud.points)} of the NeRF's {len(points)} opaque points remained after "
                          "removing outliers: give it more Reconstruction steps")
    points = transform.points_to_input(np.asarray(cloud.points))
    out_dir.mkdir(parents=True, exist_ok=True)
    cloud_path = out_dir / "point_cloud.ply"
    # the point cloud is written first: whatever meshing does, the points found stay the user's
    write_point_cloud_ply(cloud_path, points, np.asarray(cloud.colors), transform.normals_to_input(np.asarray(cloud.normals)))
    result = ExportResult(cloud_path, None, len(points), 0, 0, points.min(0).tolist(), points.max(0).tolist())
    try:
        if config.mesh_method == "tsdf":
            from backend.tsdf_mesh import tsdf_mesh

            pipeline.eval()
            try:
                mesh = tsdf_mesh(pipeline, crop, config.tsdf_resolution, should_stop)
            finally:
                pipeline.train()
        else:
            mesh = poisson_mesh(cloud, crop, config)
        if config.max_faces and len(mesh.triangles) > config.max_faces:
            mesh = mesh.simplify_quadric_decimation(target_number_of_triangles=config.max_faces)
        mesh_vertices = transform.points_to_input(np.asarray(mesh.vertices))
        mesh_faces = np.asarray(mesh.triangles, dtype=np.int64)
        mesh_colors = np.asarray(mesh.vertex_colors) if mesh.has_vertex_colors() else np.full_like(mesh_vertices, 0.5)
        result.mesh = out_dir / f"mesh.{config.mesh_format}"
        write_mesh(result.mesh, mesh_vertices, mesh_faces, mesh_colors)
        result.num_vertices, result.num_faces = len(mesh_vertices), len(mesh_faces)
        if config.textured_mesh and len(mesh.triangles):
            from backend.textured_mesh import export_textured

            result.textured_mesh, result.extra_files = export_textured(pipeline, mesh, transform, out_dir / "textured",
                                                                       config.texture_size)
    except (RuntimeError, ValueError, IndexError) as error:  # open3d's and xatlas's failures are RuntimeErrors
        result.mesh_error = (f"no mesh: meshing the {len(points)} points failed ({plain_error(error)}); the point "
                             "cloud is kept")
    return result


def poisson_mesh(cloud, crop, config: OutputConfig):  # -> o3d.geometry.TriangleMesh
    """Poisson in nerfstudio's frame (as ns-export does), trimmed like ns-export, cropped to the region."""
    import open3d as o3d

    if not cloud.has_normals() or len(cloud.points) < 32:
        raise ValueError(f"{len(cloud.points)} points with normals are too few to mesh")
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(cloud, depth=config.poisson_depth)
    density = np.asarray(densities, dtype=np.float64)
    if not len(density):
        raise ValueError("Poisson reconstruction returned no surface")
    # ns-export's trimming of unsupported skin (open3d takes the array, its stubs say Sequence[bool])
    mesh.remove_vertices_by_mask(density < np.quantile(density, 0.1))  # type: ignore[arg-type]
    if config.region_min is not None and crop is not None:  # Poisson's closed skin reaches past the region
        outside = ~crop.within(torch.from_numpy(np.asarray(mesh.vertices)).float()).numpy()
        mesh.remove_vertices_by_mask(outside)  # type: ignore[arg-type]
    return mesh


def crop_box(transform: DataparserTransform, config: OutputConfig):  # -> OrientedBox | None
    """Where exported points may lie, in nerfstudio's frame: the edit region (an axis-aligned box of the input
    frame, rotated and scaled by the dataparser's transform), else nerfstudio's [-1, 1] box (what lies outside is
    background far behind the scene), else anywhere."""
    from nerfstudio.data.scene_box import OrientedBox

    if config.region_min is not None and config.region_max is not None:
        low, high = np.asarray(config.region_min, np.float64), np.asarray(config.region_max, np.float64)
        center = transform.points_to_nerfstudio(((low + high) / 2)[None])[0]
        return OrientedBox(R=torch.as_tensor(transform.rotation, dtype=torch.float32),
                           T=torch.as_tensor(center, dtype=torch.float32),
                           S=torch.as_tensor((high - low) * transform.scale, dtype=torch.float32))
    if config.crop_to_scene_box:
        return OrientedBox(R=torch.eye(3), T=torch.zeros(3), S=torch.full((3,), 2.0))
    return None
