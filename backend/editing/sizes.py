"""The size the editor works at: plain arithmetic, importable without torch or diffusers (the cost model and the
server's loop thread use it)."""

from __future__ import annotations


def working_size(height: int, width: int, max_side: int, multiple: int = 8) -> tuple[int, int]:
    """Size the editor works at: the longer side at most ``max_side`` (aspect ratio kept), both sides multiples of
    ``multiple`` (the VAE's and UNet's down-sampling), never below ``multiple``."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    scale = min(1.0, max_side / max(height, width))

    def snap(side: int) -> int:
        snapped = max(multiple, int(round(side * scale / multiple)) * multiple)
        return min(snapped, max(multiple, max_side // multiple * multiple))

    return snap(height), snap(width)
