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


def test_depth_and_edit_masks_are_stored_as_nerfstudio_reads_them_and_encoded_photos_decode(tmp_path) -> None:
    """Blender's depth (metres, float32) becomes a 16-bit millimetre PNG (``depth_file_path``, 0 where nothing was
    hit or beyond 65.5 m), an edit mask an 8-bit PNG (``edit_mask_path``); a PNG-encoded photo is decoded and
    checked against its declared size."""
    import io

    import pytest

    cameras = [protocol.messages.Camera(fl_x=20.0, fl_y=20.0, cx=8, cy=6, w=16, h=12,
                                        transform_matrix=np.eye(4).tolist())] * 2
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    encoded = io.BytesIO()
    Image.fromarray(photo).save(encoded, format="PNG")
    images = [RawImage.from_encoded(encoded.getvalue(), "png", [12, 16, 3]), RawImage.from_array(photo)]
    depth = rng.uniform(0.5, 20.0, (12, 16)).astype(np.float32)
    depth[0, 0], depth[0, 1], depth[0, 2] = 0.0, np.inf, 70.0  # no hit, no hit, too far for millimetre PNGs
    mask = np.zeros((12, 16), np.uint8)
    mask[3:8, 4:9] = 255
    aux = [protocol.AuxUpload(0, "depth", RawImage.from_array(depth)),
           protocol.AuxUpload(0, "edit_mask", RawImage.from_array(mask))]
    begin = begin_request("up", cameras, images, "s", aux)
    store = JobStore(tmp_path / "jobs")
    scene_id = store.write_scene(begin, [image.data for image in images] + [item.image.data for item in aux])

    loaded = load_scene(store.scene_dir(scene_id))
    frame = loaded.frames[0]
    assert np.array_equal(np.asarray(Image.open(frame.image_path)), photo)
    assert frame.depth_path is not None and frame.edit_mask_path is not None and not loaded.has_depth
    stored = np.asarray(Image.open(frame.depth_path))
    assert stored.dtype == np.uint16
    assert list(stored[0, :3]) == [0, 0, 0]
    assert np.abs(stored[1:].astype(float) / 1000 - depth[1:]).max() <= 0.0005 + 1e-6
    assert np.array_equal(np.asarray(Image.open(frame.edit_mask_path)), mask)

    wrong = protocol.AuxUpload(1, "edit_mask", RawImage.from_array(depth))
    with pytest.raises(protocol.ValidationError) as info:
        begin_request("up2", cameras, images, "s", [wrong])
    assert info.value.field == "content.aux_images[0].image" and "uint8" in str(info.value)
    lying = [RawImage.from_encoded(encoded.getvalue(), "png", [24, 16, 3]), images[1]]
    cameras_24 = [protocol.messages.Camera(fl_x=20.0, fl_y=20.0, cx=8, cy=12, w=16, h=24,
                                           transform_matrix=np.eye(4).tolist()), cameras[1]]
    with pytest.raises(protocol.ValidationError) as size:
        store.write_scene(begin_request("up3", cameras_24, lying, "s"), [image.data for image in lying])
    assert size.value.field == "images[0].shape" and "16x12" in str(size.value)


def test_meshes_uploaded_with_a_scene_become_its_surfaces_and_bad_ones_are_refused_by_object(tmp_path) -> None:
    import pytest

    from tests.backend.bake.test_bake import uv_sphere

    scene = make_tiny_scene(tmp_path / "source", num_views=2, size=16)
    cameras = [protocol.messages.Camera(fl_x=scene.focal, fl_y=scene.focal, cx=8, cy=8, w=16, h=16,
                                        transform_matrix=c2w.tolist()) for c2w in scene.c2w]
    images = [RawImage.from_array(np.ascontiguousarray(image)) for image in scene.images]
    sphere = uv_sphere(rings=4, segments=8)
    meshes = [protocol.MeshUpload.from_array("in2n bake Sphere 1a2b", sphere, "Sphere")]
    store = JobStore(tmp_path / "jobs")
    begin = begin_request("up", cameras, images, "s", (), meshes)
    scene_id = store.write_scene(begin, [image.data for image in images] + [mesh.data for mesh in meshes])
    [surface] = load_scene(store.scene_dir(scene_id)).surfaces
    assert (surface.name, surface.object_name) == ("in2n bake Sphere 1a2b", "Sphere")
    assert np.array_equal(surface.corners, sphere)

    broken = sphere.copy()
    broken[..., 3:5] = 0.25  # every face collapsed in UV space
    meshes = [protocol.MeshUpload.from_array("in2n bake Cube 9f", broken, "Cube")]
    begin = begin_request("up2", cameras, images, "s", (), meshes)
    with pytest.raises(protocol.ValidationError, match="UV map of object 'Cube' has no area") as info:
        store.write_scene(begin, [image.data for image in images] + [mesh.data for mesh in meshes])
    assert info.value.field == "content.meshes[0]"
    assert len(list(store.scenes.iterdir())) == 1  # the refused scene left nothing behind
