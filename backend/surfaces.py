"""The user's own surfaces (Blender's selected mesh objects) that an edit is baked onto, as a scene stores them.

A surface is a triangle soup in the scene's (input) frame with the UV map the bake writes into:
``float32 [triangles, 3, 5]``, per corner ``x y z u v`` (the protocol's :class:`~protocol.messages.SurfaceMesh`
layout). A scene folder keeps them as ``surfaces/<index>.npy`` listed in ``surfaces.json`` (written last), beside its
``transforms.json``; the job copies them into its ``input/`` so that any snapshot can be baked later. No torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend import atomic
from protocol.messages.scene import MESH_CORNER_FLOATS

INDEX_FILE = "surfaces.json"
FOLDER = "surfaces"


class SurfaceError(ValueError):
    """A surface cannot be baked onto; ``field`` names it (``meshes[2]``) and the message names the object."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Surface:
    name: str
    """The client's key for it (the Blender mesh its UVs belong to); results are named by it."""
    object_name: str
    """The object as the user knows it."""
    corners: np.ndarray
    """``float32 [triangles, 3, 5]``: ``x y z`` in the input frame and ``u v`` per corner."""

    @property
    def positions(self) -> np.ndarray:
        """``[triangles, 3, 3]`` corner positions."""
        return self.corners[..., :3]

    @property
    def uvs(self) -> np.ndarray:
        """``[triangles, 3, 2]`` corner UVs (v up, as Blender's)."""
        return self.corners[..., 3:5]

    @property
    def label(self) -> str:
        return self.object_name or self.name


def checked_surface(name: str, object_name: str, corners: np.ndarray, field: str) -> Surface:
    """A surface whose corners are finite, with some area in space and in UV space; else :class:`SurfaceError`
    saying what is wrong with the object in the user's words."""
    label = object_name or name
    corners = np.ascontiguousarray(corners, dtype=np.float32)
    if corners.ndim != 3 or corners.shape[1:] != (3, MESH_CORNER_FLOATS) or len(corners) == 0:
        raise SurfaceError(field, f"object {label!r} has no faces to bake onto")
    if not np.isfinite(corners).all():
        raise SurfaceError(field, f"object {label!r} has vertex positions or UVs that are not finite numbers")
    if not (triangle_areas(corners[..., :3]) > 0).any():
        raise SurfaceError(field, f"object {label!r} has no surface area (all its faces are degenerate)")
    if not (np.abs(uv_signed_areas(corners[..., 3:5])) > 0).any():
        raise SurfaceError(field, f"the UV map of object {label!r} has no area (every face is collapsed in UV space)")
    return Surface(name, object_name, corners)


def triangle_areas(positions: np.ndarray) -> np.ndarray:
    """``[T]`` areas of ``[T, 3, 3]`` triangles."""
    cross = np.cross(positions[:, 1] - positions[:, 0], positions[:, 2] - positions[:, 0])
    return 0.5 * np.linalg.norm(cross, axis=-1)


def uv_signed_areas(uvs: np.ndarray) -> np.ndarray:
    """``[T]`` signed areas of ``[T, 3, 2]`` UV triangles (positive: counter-clockwise)."""
    a, b, c = uvs[:, 0], uvs[:, 1], uvs[:, 2]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1]))


def write_surfaces(folder: Path, surfaces: list[Surface] | tuple[Surface, ...]) -> None:
    """``folder/surfaces/<i>.npy`` and ``folder/surfaces.json`` (last); nothing when there are none."""
    if not surfaces:
        return
    entries = []
    for index, surface in enumerate(surfaces):
        relative = f"{FOLDER}/{index:03d}.npy"
        with atomic.atomic_output(folder / relative) as stream:
            np.save(stream, surface.corners, allow_pickle=False)
        entries.append({"name": surface.name, "object_name": surface.object_name, "file": relative,
                        "triangles": int(len(surface.corners))})
    atomic.write_json(folder / INDEX_FILE, {"surfaces": entries})


def read_surfaces(folder: Path) -> tuple[Surface, ...]:
    """The surfaces a scene (or a job's ``input/``) folder holds; none when it has no ``surfaces.json``."""
    index = Path(folder) / INDEX_FILE
    if not index.is_file():
        return ()
    try:
        entries = json.loads(index.read_text())["surfaces"]
        surfaces = []
        for position, entry in enumerate(entries):
            corners = np.load(Path(folder) / entry["file"], allow_pickle=False)
            surfaces.append(checked_surface(str(entry["name"]), str(entry.get("object_name", "")), corners,
                                            f"{INDEX_FILE} surfaces[{position}]"))
    except SurfaceError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SurfaceError(str(index), f"damaged surfaces file ({type(error).__name__}: {error})") from None
    return tuple(surfaces)
