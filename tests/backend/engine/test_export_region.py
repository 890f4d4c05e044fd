"""The export shoots its rays only from pixels that can see the edit region: every pixel whose ray meets the box
lies inside the camera's rectangle (nothing the crop keeps is lost), and the rectangle is small for a small box."""

from __future__ import annotations

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.scene_box import OrientedBox

from backend.export import pixels_seeing_box
from tests.helpers.scenes import look_at

HEIGHT, WIDTH = 48, 64


def ray_meets_box(origins: np.ndarray, directions: np.ndarray, box: OrientedBox) -> np.ndarray:
    """Slab test in the box's own frame (independent of the projection under test)."""
    rotation, center, size = box.R.numpy(), box.T.numpy(), box.S.numpy()
    o = (origins - center) @ rotation
    d = directions @ rotation
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (-size / 2 - o) / d, (size / 2 - o) / d
    near = np.nanmax(np.minimum(t0, t1), axis=-1)
    far = np.nanmin(np.maximum(t0, t1), axis=-1)
    return (far >= np.maximum(near, 0)) & (far > 0)


def test_rectangles_hold_every_pixel_whose_ray_meets_the_box_and_little_else() -> None:
    eyes = [np.array([3.0, 0.5, 1.0]), np.array([-2.0, 2.5, 1.5]), np.array([0.5, -3.0, 0.3]),
            np.array([0.2, 0.1, 0.0])]  # the last one stands inside the box
    c2w = np.stack([look_at(eye, np.zeros(3))[:3] for eye in eyes])
    cameras = Cameras(camera_to_worlds=torch.from_numpy(c2w).float(), fx=50.0, fy=50.0, cx=WIDTH / 2 - 3,
                      cy=HEIGHT / 2 + 2, width=WIDTH, height=HEIGHT)
    angle = 0.4
    rotation = torch.tensor([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]],
                            dtype=torch.float32)
    box = OrientedBox(R=rotation, T=torch.tensor([0.2, 0.1, 0.0]), S=torch.tensor([0.8, 0.5, 0.6]))
    rectangles = pixels_seeing_box(cameras, box, HEIGHT, WIDTH, margin_px=0)
    for index in range(len(eyes)):
        rays = cameras.generate_rays(camera_indices=index)
        meets = ray_meets_box(rays.origins.numpy().reshape(-1, 3), rays.directions.numpy().reshape(-1, 3), box)
        meets = meets.reshape(HEIGHT, WIDTH)
        y0, y1, x0, x1 = rectangles[index].tolist()
        inside = np.zeros_like(meets)
        inside[y0:y1, x0:x1] = True
        assert meets.any() and not (meets & ~inside).any(), index  # nothing the crop keeps is left out
        if index < 3:
            assert inside.sum() <= 2.0 * meets.sum() + 4 * (HEIGHT + WIDTH), index  # and the rectangle is snug
            assert inside.sum() < 0.6 * HEIGHT * WIDTH, index
        else:
            assert inside.all()  # inside the box: every ray starts in it
