"""Uploaded scenes on disk: main images and the simulated editor's target images, as a scene the engine reads."""

from __future__ import annotations

import numpy as np
from PIL import Image

import protocol
from backend.scene import load_scene
from backend.server.jobs.store import JobStore
from protocol import RawImage
from protocol.upload import begin_request
from tests.helpers.scenes import make_tiny_scene


def test_targets_uploaded_with_a_scene_are_stored_beside_its_images_and_named_per_frame(tmp_path) -> None:
    scene = make_tiny_scene(tmp_path / "source", num_views=3, size=16)
    cameras = [protocol.messages.Camera(fl_x=scene.focal, fl_y=scene.focal, cx=8, cy=8, w=16, h=16,
                                        transform_matrix=c2w.tolist()) for c2w in scene.c2w]
    images = [RawImage.from_array(np.ascontiguousarray(image)) for image in scene.images]
    rng = np.random.default_rng(0)
    targets = {0: rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
               2: rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)}  # RGBA: stored as RGB
    aux = [protocol.AuxUpload(index, "target", RawImage.from_array(target)) for index, target in targets.items()]
    begin = begin_request("up", cameras, images, "s", aux)
    store = JobStore(tmp_path / "jobs")
    scene_id = store.write_scene(begin, [image.data for image in images] + [item.image.data for item in aux])

    loaded = load_scene(store.scene_dir(scene_id))
    assert not loaded.has_targets and loaded.frames[1].target_path is None  # camera 1 came without one
    for index, target in targets.items():
        path = loaded.frames[index].target_path
        assert path is not None and path.parent.name == "targets"
        assert np.array_equal(np.asarray(Image.open(path)), target[..., :3])
    assert np.array_equal(np.asarray(Image.open(loaded.frames[0].image_path)), scene.images[0])
