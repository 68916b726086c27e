"""Rollout videos: camera beside a top-down view, caption underneath, written and read back."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest

from more_policy.actions import ActionSpace
from more_policy.sim.env import make_env
from more_policy.sim.physics import yaw_pitch_quat
from more_policy.sim.tasks import goal_xy
from more_policy.sim.video import (
    PANEL,
    Caption,
    TopDownView,
    outcome_text,
    rollout_frame,
    write_video,
)

pytestmark = pytest.mark.sim


def test_caption_says_instruction_step_command_and_outcome():
    space = ActionSpace()
    command = space.default_command(vel_x=0.4, yaw_rate=-0.25)
    lines = Caption("go to the red ball", 7, command, "failure: collision").lines(space)
    assert lines[0] == "go to the red ball"
    assert lines[1] == "step 7   failure: collision"
    assert "vel_x +0.40" in lines[2] and "yaw_rate -0.25" in lines[2]
    assert Caption("x", 0).lines() == ["x", "step 0   running"]  # no command yet


def test_outcome_text():
    assert outcome_text(True, "collision") == "success"
    assert outcome_text(False, "collision") == "failure: collision"
    assert outcome_text(False, None, timeout=True, goal_distance=1.234) == \
        "timeout (1.23 m from the goal)"
    assert outcome_text(False, None) == "stopped short"


def test_frame_layout_and_text_band():
    camera = np.full((120, 160, 3), 200, np.uint8)
    top = np.zeros((240, 240, 3), np.uint8)
    frame = rollout_frame(camera, top, Caption("go to the red ball", 3, None, "success"))
    assert frame.dtype == np.uint8 and frame.shape[1] == 320 + 240  # camera scaled to 240 high
    assert frame.shape[0] > PANEL
    band = frame[PANEL:]
    assert (band > 128).any(), "caption text drawn"
    green = band[..., 1].astype(int) - band[..., 0]
    assert green.max() > 80, "a success is written in green"
    no_command = rollout_frame(camera, top, Caption("go to the red ball", 0))
    assert no_command.shape == frame.shape  # every frame of a video has the same size
    with pytest.raises(ValueError, match="image"):
        rollout_frame(np.zeros((0, 0, 3), np.uint8), None, Caption("x", 0))


def test_top_down_view_follows_the_robot_and_video_round_trips(tmp_path):
    env = make_env("go_to", seed=0, render=False)
    env.reset(seed=0)
    start = env.base_pose()
    view = TopDownView.framing(env.physics.model, start[:2], goal_xy(env.scene))
    try:
        before = view.render(env.physics.data)
        moved = start[:3] + np.array([0.8, 0.0, 0.0])
        env.physics.set_base_pose(moved, yaw_pitch_quat(start[3], 0.0))
        import mujoco

        mujoco.mj_kinematics(env.physics.model, env.physics.data)
        after = view.render(env.physics.data)
    finally:
        view.close()
        env.close()
    assert before.shape == (PANEL, PANEL, 3)
    assert np.abs(before.astype(int) - after).sum(axis=2).astype(bool).mean() > 0.002

    frames = [rollout_frame(before, before, Caption("go", 0)),
              rollout_frame(after, after, Caption("go", 1, None, "success"))]
    path = write_video(tmp_path / "sub" / "v.mp4", frames)
    path = write_video(path, frames)  # a rerun overwrites
    back = imageio.mimread(path)
    assert len(back) == 2 and back[0].shape == frames[0].shape
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "empty.mp4", [])
