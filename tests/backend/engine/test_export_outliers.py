"""The export's outlier removal on a degenerate cloud (most points on top of each other: zero spread, so every point
is an 'outlier' by the statistics) keeps the cloud instead of emptying it, which failed a whole job once."""

from __future__ import annotations

import torch

from backend.export import point_cloud_with_normals


def test_a_cloud_of_stacked_points_is_not_emptied_by_outlier_removal() -> None:
    points = torch.zeros(200, 3)
    points[:150] = torch.tensor([1.0, 2.0, 3.0])  # most points on one spot
    points[150:] = torch.rand(50, 3)
    colors, directions = torch.rand(200, 3), torch.tensor([[0.0, 0.0, -1.0]]).repeat(200, 1)
    cloud = point_cloud_with_normals(points, colors, directions, remove_outliers=True)
    assert len(cloud.points) == 200
    spread = torch.rand(300, 3)
    spread[0] = torch.tensor([50.0, 50.0, 50.0])  # a real outlier far from a spread cloud is still removed
    cloud = point_cloud_with_normals(spread, torch.rand(300, 3), torch.rand(300, 3), remove_outliers=True)
    assert 150 <= len(cloud.points) < 300
