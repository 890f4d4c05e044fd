"""Fast checks of the Iterative Dataset Update schedule, the frame transforms and atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend import atomic
from backend.config import DatasetUpdateConfig
from backend.nerf.dataset_update import EditSchedule
from backend.nerf.frames import DataparserTransform

pytestmark = pytest.mark.timeout(120)


def test_views_are_visited_in_one_fixed_random_permutation_cycle_after_cycle():
    schedule = EditSchedule(DatasetUpdateConfig(seed=3), num_views=12, num_train_timesteps=1000)
    first_cycle = [schedule.view_for(i) for i in range(12)]
    assert sorted(first_cycle) == list(range(12))
    assert first_cycle != list(range(12))  # random, not the file order
    assert [schedule.view_for(i) for i in range(12, 24)] == first_cycle
    assert EditSchedule(DatasetUpdateConfig(seed=3), 12, 1000).view_order == schedule.view_order
    assert EditSchedule(DatasetUpdateConfig(seed=4), 12, 1000).view_order != schedule.view_order


def test_timesteps_are_uniform_within_bounds_and_reproducible():
    schedule = EditSchedule(DatasetUpdateConfig(t_min=0.02, t_max=0.98), num_views=5, num_train_timesteps=1000)
    draws = np.array([schedule.timestep_for(i) for i in range(3000)])
    assert draws.min() >= 20 and draws.max() <= 980
    assert draws.min() < 60 and draws.max() > 940  # covers the range
    assert abs(draws.mean() - 500) < 25  # uniform: mean in the middle
    assert [schedule.timestep_for(i) for i in range(10)] == list(draws[:10])  # pure function of the edit index


def test_edit_steps_follow_edit_every_n_steps_and_bad_bounds_are_rejected():
    schedule = EditSchedule(DatasetUpdateConfig(edit_every_n_steps=10), 4, 1000)
    assert [s for s in range(35) if schedule.is_edit_step(s)] == [0, 10, 20, 30]
    with pytest.raises(ValueError, match="t_min"):
        EditSchedule(DatasetUpdateConfig(t_min=0.9, t_max=0.1), 4, 1000)


def test_dataparser_transform_matches_nerfstudio_and_inverts(tiny_scene_factory):
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    scene = tiny_scene_factory(num_views=6)
    outputs = NerfstudioDataParserConfig(data=scene.path, eval_mode="all", downscale_factor=1).setup() \
        .get_dataparser_outputs("train")
    transform = DataparserTransform(outputs.dataparser_transform.numpy(), float(outputs.dataparser_scale))
    for index, filename in enumerate(outputs.image_filenames):
        frame = int(filename.stem.split("_")[1])
        expected = outputs.cameras.camera_to_worlds[index].numpy()
        assert transform.c2w_to_nerfstudio(scene.c2w[frame]) == pytest.approx(expected, abs=1e-5)
    points = np.random.default_rng(0).normal(size=(50, 3)) * 5 + scene.center
    assert transform.points_to_input(transform.points_to_nerfstudio(points)) == pytest.approx(points)
    # The scene centre sits far from the origin in the input frame but inside nerfstudio's unit box.
    assert np.linalg.norm(scene.center) > 4
    assert np.abs(transform.points_to_nerfstudio(scene.center[None])[0]).max() < 1


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "state.json"
    atomic.write_json(target, {"step": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_output(target) as stream:
            stream.write(b'{"step": 2, "half')
            raise RuntimeError("killed mid-write")
    assert target.read_text().strip() == '{\n  "step": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left behind
    image = np.zeros((4, 5, 3), np.uint8)
    atomic.write_png(tmp_path / "a.png", image)
    assert torch.tensor(np.asarray(__import__("PIL.Image").Image.open(tmp_path / "a.png"))).shape == (4, 5, 3)


def test_noise_levels_stay_inside_the_editors_range_at_the_extremes():
    """t_min = 0 must not draw T = 0 (no DDIM step); t_max = 1 may draw the full schedule T = 1000."""
    schedule = EditSchedule(DatasetUpdateConfig(t_min=0.0, t_max=1.0), num_views=3, num_train_timesteps=1000)
    assert schedule.timestep_bounds() == (1, 1000)
    draws = [schedule.timestep_for(i) for i in range(2000)]
    assert min(draws) >= 1 and max(draws) <= 1000 and max(draws) > 990


def test_the_engine_uses_the_protocols_names_and_defaults_and_reads_old_config_files():
    """One vocabulary: the schedule's fields and defaults are the protocol's; a config.json written by an earlier
    version (edit_rate, diffusion_steps, ...) still resumes."""
    import dataclasses

    from backend.config import DatasetUpdateConfig, EditJobConfig
    from protocol import messages as m

    schedule, update = m.Schedule(), DatasetUpdateConfig()
    shared = {f.name for f in dataclasses.fields(m.Schedule)} & {f.name for f in dataclasses.fields(update)}
    assert shared == {"total_steps", "edit_every_n_steps", "images_per_edit", "t_min", "t_max", "ddim_steps"}
    assert all(getattr(update, name) == getattr(schedule, name) for name in shared)
    assert EditJobConfig().nerf.reconstruction_steps == schedule.reconstruction_steps
    old = EditJobConfig.from_dict({"update": {"edit_steps": 7, "edit_rate": 3, "edit_count": 2, "diffusion_steps": 5}})
    assert (old.update.total_steps, old.update.edit_every_n_steps, old.update.images_per_edit,
            old.update.ddim_steps) == (7, 3, 2, 5)
