"""Reading the dataset's captures in the backend env: images (uint8, in ``transforms.json`` order) and cameras.

Cameras are parsed by the shared ``capture`` package, the same code that reads the user's captures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from capture import Capture, read_transforms


def read_rgb(path: Path) -> np.ndarray:
    """``H W 3`` uint8 pixels of an image file (alpha dropped)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def load_capture(folder: Path) -> Capture:
    return read_transforms(Path(folder) / "transforms.json")


def read_capture_images(folder: Path) -> dict[str, np.ndarray]:
    """``file_path -> H W 3 uint8`` for every frame of ``folder/transforms.json``, in the file's order."""
    folder = Path(folder)
    capture = load_capture(folder)
    return {frame.file_path: read_rgb(folder / frame.file_path) for frame in capture.frames}


def write_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(path)
