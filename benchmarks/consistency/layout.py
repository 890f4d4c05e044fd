"""Folder layout of a rendered consistency dataset, shared by the renderer (blender env) and the runner (backend env).

Every split is a nerfstudio capture (``transforms.json`` + ``images/``) of the same procedural scene::

    DATA/
      dataset.json        what was rendered (sizes, cameras, the edit, render time)
      original/           training cameras, original scene        -> what the NeRF is reconstructed from
      edited_gt/          training cameras, ground-truth edited   -> what the simulated editor blends towards
      heldout_original/   held-out cameras, original scene        -> reference for drift in unedited regions
      heldout_edited/     held-out cameras, ground-truth edited   -> what every method is scored against
"""

from __future__ import annotations

SPLITS = ("original", "edited_gt", "heldout_original", "heldout_edited")
DATASET_FILE = "dataset.json"
TRANSFORMS_FILE = "transforms.json"
IMAGES_FOLDER = "images"
