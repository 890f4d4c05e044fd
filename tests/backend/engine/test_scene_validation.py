"""Bad scenes are rejected before any heavy work, with an error naming the bad field or file."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from backend.scene import SceneError, load_scene

pytestmark = pytest.mark.timeout(120)


def edit_transforms(scene_path: Path, change) -> None:
    path = scene_path / "transforms.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def test_valid_scene_loads_all_frames_with_intrinsics(tiny_scene_factory):
    scene = tiny_scene_factory(num_views=8, size=32)
    loaded = load_scene(scene.path)
    assert loaded.num_views == 8
    frame = loaded.frames[3]
    assert (frame.width, frame.height, frame.fl_x) == (32, 32, pytest.approx(scene.focal))
    assert frame.c2w == pytest.approx(scene.c2w[3])
    assert frame.image_path.is_file()


@pytest.mark.parametrize("field, change", [
    ("frames", lambda meta: meta.update(frames=[])),
    ("frames[2].transform_matrix[1][3]",
     lambda meta: meta["frames"][2]["transform_matrix"][1].__setitem__(3, float("nan"))),
    ("frames[1].transform_matrix", lambda meta: meta["frames"][1].update(transform_matrix=[[1, 0, 0], [0, 1, 0]])),
    ("frames[0].file_path", lambda meta: meta["frames"][0].pop("file_path")),
    ("frames[0].fl_x", lambda meta: meta.pop("fl_x")),
    ("cy", lambda meta: meta.update(cy="middle")),
])
def test_bad_transforms_fields_are_named(tiny_scene_factory, field, change):
    scene = tiny_scene_factory(num_views=4)
    edit_transforms(scene.path, change)
    with pytest.raises(SceneError) as error:
        load_scene(scene.path)
    assert error.value.field == field
    assert field in str(error.value)


def test_missing_image_names_the_file(tiny_scene_factory):
    scene = tiny_scene_factory(num_views=4)
    (scene.path / "images" / "frame_00002.png").unlink()
    with pytest.raises(SceneError, match=r"frames\[2\]\.file_path .*frame_00002\.png.*not found"):
        load_scene(scene.path)


def test_image_size_mismatch_is_reported(tiny_scene_factory):
    scene = tiny_scene_factory(num_views=4, size=32)
    Image.new("RGB", (40, 32)).save(scene.path / "images" / "frame_00001.png")
    with pytest.raises(SceneError, match=r"frame_00001\.png.*40x32 but w x h is 32x32"):
        load_scene(scene.path)


def test_unreadable_image_is_reported(tiny_scene_factory):
    scene = tiny_scene_factory(num_views=4)
    image = scene.path / "images" / "frame_00003.png"
    image.write_bytes(image.read_bytes()[:60])  # truncated PNG
    with pytest.raises(SceneError, match=r"frames\[3\]\.file_path .*unreadable image"):
        load_scene(scene.path)


def test_missing_or_broken_transforms_json(tmp_path):
    with pytest.raises(SceneError, match="not a capture layout this reads. Accepted layouts: nerfstudio: "):
        load_scene(tmp_path)
    (tmp_path / "transforms.json").write_text("{not json")
    with pytest.raises(SceneError, match="not readable JSON"):
        load_scene(tmp_path)


def test_cli_rejects_bad_scene_with_exit_code_3_before_loading_models(tiny_scene_factory, tmp_path):
    scene = tiny_scene_factory(num_views=4)
    edit_transforms(scene.path, lambda meta: meta["frames"][0]["transform_matrix"][0].__setitem__(0, float("nan")))
    job = tmp_path / "job"
    completed = subprocess.run(
        [sys.executable, "-m", "backend", "edit", "--data", str(scene.path), "--prompt", "make it blue",
         "--output", str(job), "--editor", "tiny", "--quiet"],
        capture_output=True, text=True, timeout=110, cwd=Path(__file__).resolve().parents[3],
    )
    assert completed.returncode == 3, completed.stderr
    assert "frames[0].transform_matrix[0][0]" in completed.stderr and "finite number, got nan" in completed.stderr
    assert not (job / "checkpoints").exists()  # rejected before the job started


def test_cli_help_documents_options_and_exit_codes():
    completed = subprocess.run([sys.executable, "-m", "backend", "edit", "--help"], capture_output=True, text=True,
                               timeout=60, cwd=Path(__file__).resolve().parents[3])
    assert completed.returncode == 0
    for text in ("--data", "--prompt", "--output", "--editor", "--steps", "--no-lpips", "exit codes", "resume"):
        assert text in completed.stdout


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` pixels (its data is a few bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("damage", ["a header claiming 100,000 x 100,000 px", "a NUL byte in a file name"])
def test_cli_reports_a_bomb_header_or_an_unusable_file_name_as_a_bad_scene_in_one_message(tiny_scene_factory,
                                                                                           tmp_path, damage):
    """Issue 22, item 19: both used to print a raw traceback (exit 1)."""
    scene = tiny_scene_factory(num_views=4)
    if damage.startswith("a header"):
        first = json.loads((scene.path / "transforms.json").read_text())["frames"][0]["file_path"]
        (scene.path / first).write_bytes(png_header(100_000, 100_000))
    else:
        edit_transforms(scene.path, lambda meta: meta["frames"][0].__setitem__("file_path", "images/a\0b.png"))
    completed = subprocess.run(
        [sys.executable, "-m", "backend", "edit", "--data", str(scene.path), "--prompt", "make it blue",
         "--output", str(tmp_path / "job"), "--editor", "tiny", "--quiet"],
        capture_output=True, text=True, timeout=110, cwd=Path(__file__).resolve().parents[3])
    assert completed.returncode == 3, completed.stderr
    assert "Traceback" not in completed.stderr
    assert [line for line in completed.stderr.splitlines() if line.startswith("error:")] == [
        next(line for line in completed.stderr.splitlines() if "frames[0].file_path" in line)]
