"""Load and validate a scene before any heavy work starts, in any capture layout the shared ``capture`` package reads
(nerfstudio ``transforms.json``, NeRF-synthetic / BlenderNeRF, instant-ngp, COLMAP).

The capture reader checks the cameras; this module adds what the backend needs: every image decodes (catches
truncated files) and has the size its camera says, all views share one size, and the optional per-frame
``target_file_path`` (the simulated editor's ground truth) is an image of that size too. Every problem is reported as
a :class:`SceneError` whose ``field`` names the bad JSON field or file, so the CLI and the server can show the user
exactly what to fix. Held-out views (val / test splits) are not edited or trained on.

nerfstudio's dataparser reads the scene through :func:`write_dataparser_input`: one nerfstudio ``transforms.json``
with the training views, whatever layout the user brought.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

import capture as capture_format
from backend.surfaces import Surface, SurfaceError, read_surfaces, write_surfaces
from protocol.messages import AUX_FRAME_KEYS

TARGET_KEY = AUX_FRAME_KEYS["target"]
"""Per-frame key of the simulated editor's ground-truth edited image (``target_file_path``)."""
DEPTH_KEY = AUX_FRAME_KEYS["depth"]
"""Per-frame key of the view's depth image (nerfstudio's ``depth_file_path``: 16-bit millimetres)."""
EDIT_MASK_KEY = AUX_FRAME_KEYS["edit_mask"]
"""Per-frame key of where the edit may act (``edit_mask_path``; not nerfstudio's ``mask_path``)."""
PATH_KEYS = ("mask_path", DEPTH_KEY, EDIT_MASK_KEY, TARGET_KEY)
"""Per-frame keys holding file paths relative to the capture folder (made absolute for the dataparser)."""


class SceneError(ValueError):
    """The scene cannot be used. ``field`` is the JSON path (``frames[3].transform_matrix``) or file at fault."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class PinholeCamera:
    """A camera in the INPUT scene's frame (transforms.json's, e.g. Blender's world): OpenGL axes (Blender's camera
    axes), pixel intrinsics with the origin at the top-left corner."""

    c2w: np.ndarray
    """``4 4`` camera-to-world matrix."""
    fl_x: float
    fl_y: float
    cx: float
    cy: float
    width: int
    height: int


@dataclass(frozen=True)
class SceneFrame(PinholeCamera):
    """One view of a scene: its camera and the image it took."""

    image_path: Path = Path()
    """Absolute path of the image."""
    name: str = ""
    """The image's name inside the job (edited images, snapshots) and in exported captures: its ``file_path``
    when that is inside the capture folder (:attr:`capture.CaptureFrame.image_name`)."""
    target_path: Path | None = None
    """Absolute path of the view's ground-truth edited image (frame key ``target_file_path``), which only the
    SIMULATED editor reads; None for real captures."""
    depth_path: Path | None = None
    """The view's depth image (``depth_file_path``), e.g. Blender's Z pass; None for most real captures."""
    edit_mask_path: Path | None = None
    """Where the edit may act in this view (``edit_mask_path``: the selected objects), or None (everywhere)."""


@dataclass(frozen=True)
class Scene:
    root: Path
    """Folder the frames' image paths are relative to (the capture folder)."""
    frames: tuple[SceneFrame, ...]
    """The training views (edited and trained on)."""
    capture: capture_format.Capture
    """The capture as read (all splits, the layout it came in), for writing results back in that layout."""
    surfaces: tuple[Surface, ...] = ()
    """The user's own surfaces the edit is baked onto (``surfaces.json`` beside the camera file; Blender's selected
    objects), or none."""

    @property
    def num_views(self) -> int:
        return len(self.frames)

    @property
    def layout(self) -> str:
        return self.capture.layout

    @property
    def has_targets(self) -> bool:
        """Every view has a ground-truth edited image (what the simulated editor needs)."""
        return all(frame.target_path is not None for frame in self.frames)

    @property
    def has_depth(self) -> bool:
        """Every view has a depth image (what depth supervision needs)."""
        return all(frame.depth_path is not None for frame in self.frames)

    def depth_coverage(self) -> float:
        """The fraction of the depth images' pixels that hold a depth (not 0: unknown, or nothing was hit)."""
        counts = [(int(np.count_nonzero(pixels)), pixels.size) for pixels in
                  (np.asarray(Image.open(frame.depth_path)) for frame in self.frames if frame.depth_path is not None)]
        return sum(c for c, _ in counts) / max(1, sum(n for _, n in counts))


def load_scene(root: Path | str) -> Scene:
    """Read and check the capture at ``root`` and decode every image it names once."""
    try:
        capture = capture_format.read_capture(root)
    except capture_format.CaptureError as error:
        raise SceneError(error.field or error.source, error.problem) from None
    folder = capture_format.capture_folder(capture).resolve()
    train = [(index, frame) for index, frame in enumerate(capture.frames) if frame.split == "train"]
    if not train:
        raise SceneError("frames", "no training views (every frame is in a val or test split)")
    frames = []
    for index, frame in train:
        k = frame.intrinsics
        image_path = _image_path(folder, frame.file_path, f"frames[{index}].file_path")
        _check_image(image_path, k.w, k.h, f"frames[{index}].file_path")
        paths = {key: _frame_image(folder, frame.extra, key, k.w, k.h, f"frames[{index}].{key}")
                 for key in (TARGET_KEY, DEPTH_KEY, EDIT_MASK_KEY)}
        frames.append(SceneFrame(c2w=np.asarray(frame.transform_matrix, dtype=np.float64), fl_x=k.fl_x, fl_y=k.fl_y,
                                 cx=k.cx, cy=k.cy, width=k.w, height=k.h, image_path=image_path, name=frame.image_name,
                                 target_path=paths[TARGET_KEY], depth_path=paths[DEPTH_KEY],
                                 edit_mask_path=paths[EDIT_MASK_KEY]))
    sizes = {(frame.width, frame.height) for frame in frames}
    if len(sizes) > 1:
        raise SceneError("w/h", f"all frames must share one image size, found {sorted(sizes)}")
    try:
        surfaces = read_surfaces(folder)
    except SurfaceError as error:
        raise SceneError(error.field, error.problem) from None
    return Scene(folder, tuple(frames), capture, surfaces)


def write_dataparser_input(scene: Scene, folder: Path, *, use_depth: bool = True) -> Path:
    """``folder/transforms.json``: the training views as nerfstudio's dataparser reads them, with absolute image
    paths into the capture (nothing is copied). No ``applied_transform``: the cameras' frame is the input frame
    that results are exported in. Depth images only when every view has one and ``use_depth`` (nerfstudio takes
    all or none). Returns ``folder``."""
    frames = []
    keys = [key for key in PATH_KEYS if key != DEPTH_KEY or (use_depth and scene.has_depth)]
    for frame in scene.capture.train_frames:
        extra: dict[str, Any] = {key: value for key, value in frame.extra.items() if key not in PATH_KEYS}
        extra.update({key: str((scene.root / frame.extra[key]).resolve()) for key in keys
                      if isinstance(frame.extra.get(key), str)})
        frames.append(capture_format.CaptureFrame(str((scene.root / frame.file_path).resolve()), frame.intrinsics,
                                                  frame.transform_matrix, extra))
    write_surfaces(folder, scene.surfaces)  # a job's input holds what any of its snapshots is baked onto
    capture_format.write_transforms(folder / "transforms.json",
                                    capture_format.Capture(frames, camera_model=scene.capture.camera_model))
    return folder


def export_in_layout(scene: Scene, edited: dict[str, Path], folder: Path) -> Path:
    """The capture as the user brought it, with the edited images in place of the originals: the layout's own
    camera files copied unchanged (``transforms*.json``, or COLMAP's model folder) and every image at its relative
    path (``edited``: image path relative to the scene -> edited file; others are copied as they were)."""
    source = scene.capture.source
    assert source is not None, "a loaded scene knows where it came from"
    folder.mkdir(parents=True, exist_ok=True)
    if scene.layout == "colmap":
        model = capture_format.colmap.find_model(source)
        assert model is not None
        relative = model.relative_to(scene.root) if model.is_relative_to(scene.root) else Path("sparse") / "0"
        shutil.copytree(model, folder / relative, dirs_exist_ok=True)
    elif source.is_dir():  # NeRF-synthetic: every split's file
        for path in sorted(source.glob("transforms_*.json")):
            shutil.copyfile(path, folder / path.name)
    else:
        shutil.copyfile(source, folder / source.name)
    external = {frame.file_path: frame.image_name for frame in scene.capture.frames
                if frame.image_name != Path(frame.file_path).as_posix()}
    if external and scene.layout != "colmap":
        _point_at_copies(folder, external)
    for frame in scene.capture.frames:
        target = folder / frame.image_name
        target.parent.mkdir(parents=True, exist_ok=True)
        source_image = edited.get(frame.image_name, scene.root / frame.file_path)
        if source_image.suffix.lower() == target.suffix.lower():
            shutil.copyfile(source_image, target)
        else:  # an edited PNG where the capture has a JPEG: same name, the capture's format
            with Image.open(source_image) as image:
                image.convert("RGB").save(target)
    return folder


def _point_at_copies(folder: Path, external: dict[str, str]) -> None:
    """Rewrite the copied camera files' ``file_path``s that point outside the capture (absolute or ``../``) to the
    copies under ``external/``; NeRF-synthetic's extensionless paths match the file they stand for."""
    for path in sorted(folder.glob("transforms*.json")):
        data = capture_format.load_json(path)
        for entry in data.get("frames", []) if isinstance(data, dict) else []:
            written = entry.get("file_path") if isinstance(entry, dict) else None
            match = next((name for file_path, name in external.items()
                          if isinstance(written, str) and (file_path == written or
                                                           Path(file_path).with_suffix("") == Path(written))), None)
            if match is not None:
                entry["file_path"] = match
        capture_format.write_json_atomic(path, data)


def _frame_image(folder: Path, extra: dict[str, Any], key: str, width: int, height: int, field: str) -> Path | None:
    """The absolute path of a frame's auxiliary image ``key``, checked to be an image of the view's size."""
    if key not in extra:
        return None
    if not isinstance(extra[key], str):
        raise SceneError(field, "must be a string")
    path = _image_path(folder, extra[key], field)
    _check_image(path, width, height, field)
    return path


def _image_path(folder: Path, relative: str, field: str) -> Path:
    try:
        return (folder / relative).resolve()
    except (ValueError, OSError) as error:  # a NUL byte in the name, a name too long for the filesystem
        raise SceneError(field, f"not a usable file name {relative[:80]!r} ({error})") from None


def _check_image(path: Path, width: int, height: int, field: str) -> None:
    if not path.is_file():
        raise SceneError(f"{field} ({path})", "image file not found")
    try:
        with Image.open(path) as image:
            image.verify()  # decodes the structure without the pixels; catches truncated / non-image files
        with Image.open(path) as image:
            size = image.size
            image.load()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        # a header declaring far more pixels than any capture holds (PIL's decompression-bomb guard) is refused
        # before any pixel is decoded
        raise SceneError(f"{field} ({path})", f"unreadable image ({error})") from None
    if size != (width, height):
        raise SceneError(f"{field} ({path})", f"image is {size[0]}x{size[1]} but w x h is {width}x{height}")
