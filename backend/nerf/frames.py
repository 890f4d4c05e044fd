"""Moving between the input scene's frame and nerfstudio's normalised frame.

nerfstudio's dataparser maps input poses with a 3x4 transform ``[R | t]`` and then scales translations by ``s``:
``p_ns = s * (R p_in + t)`` (``Nerfstudio._generate_dataparser_outputs``: ``poses = transform @ poses`` then
``poses[:, :3, 3] *= scale``). Exports and client cameras go through these functions, never through ad-hoc math.
"""

from __future__ import annotations

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType


class DataparserTransform:
    """``p_ns = scale * (R p_in + t)`` with ``transform = [R | t]`` (3x4)."""

    def __init__(self, transform: np.ndarray, scale: float) -> None:
        self.transform = np.asarray(transform, dtype=np.float64).reshape(3, 4)
        self.scale = float(scale)

    @classmethod
    def of_pipeline(cls, pipeline) -> DataparserTransform:  # type: ignore[no-untyped-def]
        """The transform nerfstudio's dataparser applied to a pipeline's training cameras."""
        outputs = pipeline.datamanager.train_dataparser_outputs
        return cls(outputs.dataparser_transform.numpy(), float(outputs.dataparser_scale))

    @property
    def rotation(self) -> np.ndarray:
        return self.transform[:, :3]

    @property
    def translation(self) -> np.ndarray:
        return self.transform[:, 3]

    def points_to_input(self, points_ns: np.ndarray) -> np.ndarray:
        """``N 3`` points from nerfstudio's frame to the input frame: ``R^T (p / s - t)``."""
        return (np.asarray(points_ns, dtype=np.float64) / self.scale - self.translation) @ self.rotation

    def points_to_nerfstudio(self, points_in: np.ndarray) -> np.ndarray:
        return self.scale * (np.asarray(points_in, dtype=np.float64) @ self.rotation.T + self.translation)

    def normals_to_input(self, normals_ns: np.ndarray) -> np.ndarray:
        """Directions only rotate (the scale is uniform)."""
        return np.asarray(normals_ns, dtype=np.float64) @ self.rotation

    def c2w_to_nerfstudio(self, c2w_in: np.ndarray) -> np.ndarray:
        """``4 4`` camera-to-world (OpenGL axes) from the input frame to a ``3 4`` nerfstudio pose."""
        c2w_in = np.asarray(c2w_in, dtype=np.float64)
        pose = np.empty((3, 4))
        pose[:, :3] = self.rotation @ c2w_in[:3, :3]
        pose[:, 3] = self.points_to_nerfstudio(c2w_in[None, :3, 3])[0]
        return pose

    def to_json(self) -> dict:
        return {"transform": self.transform.tolist(), "scale": self.scale}


def make_camera(c2w_ns: np.ndarray, fl_x: float, fl_y: float, cx: float, cy: float, width: int, height: int,
                device: torch.device | str = "cpu") -> Cameras:
    """A single pinhole nerfstudio camera from a nerfstudio-frame pose and pixel intrinsics."""
    return Cameras(
        camera_to_worlds=torch.as_tensor(np.asarray(c2w_ns)[:3, :4], dtype=torch.float32)[None],
        fx=float(fl_x), fy=float(fl_y), cx=float(cx), cy=float(cy), width=int(width), height=int(height),
        camera_type=CameraType.PERSPECTIVE,
    ).to(device)
