"""Task scenes, instructions, success checkers and the command-mode environment."""

import math
import os

import numpy as np
import pytest

from more_policy.actions import ActionSpace
from more_policy.sim import scenes, tasks
from more_policy.sim.env import NOMINAL_HEIGHT, make_env

os.environ.setdefault("MUJOCO_GL", "egl")
pytestmark = pytest.mark.sim
SPACE = ActionSpace()


command = SPACE.default_command


@pytest.mark.parametrize("task", scenes.TASKS)
def test_scenes_are_seeded_and_use_the_requested_colours(task):
    a = scenes.sample_scene(task, np.random.default_rng(7), "unseen")
    b = scenes.sample_scene(task, np.random.default_rng(7), "unseen")
    c = scenes.sample_scene(task, np.random.default_rng(8), "unseen")
    assert a == b and a != c
    coloured = [o.color for o in a.objects if o.color and not o.kind.startswith("clutter")]
    assert coloured or task == "distinguish"
    assert all(col in scenes.COLOR_SETS["unseen"] for col in coloured)
    assert all(o.color in scenes.NEUTRALS for o in a.objects if o.kind.startswith("clutter"))
    if task == "distinguish":
        letters = [o.letter for o in a.objects if o.kind == "letter_box"]
        assert len(set(letters)) == 2 and set(letters) <= set(scenes.LETTERS)


def test_bad_scene_parameters_raise_clear_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(scenes.SceneError, match="unknown task 'fly'"):
        scenes.sample_scene("fly", rng)
    with pytest.raises(scenes.SceneError, match="colour set"):
        scenes.sample_scene("go_to", rng, "infrared")
    with pytest.raises(scenes.SceneError, match="phrasing"):
        tasks.make_instruction(scenes.sample_scene("go_to", rng), rng, "poetic")
    with pytest.raises(scenes.SceneError, match="unknown task"):
        make_env("fly")
    with pytest.raises(ValueError, match="mode"):
        make_env("go_to", mode="teleport")
    with pytest.raises(ValueError, match="LowLevelController"):
        make_env("go_to", mode="physics")
    with pytest.raises(ValueError, match="image_size"):
        make_env("go_to", image_size=(0, 10))


def test_instructions_name_the_target_and_heldout_phrasings_are_new():
    rng = np.random.default_rng(1)
    for task in scenes.TASKS:
        train = set(tasks.TEMPLATES[task]["train"])
        assert not train & set(tasks.TEMPLATES[task]["heldout"])
        scene = scenes.sample_scene(task, rng)
        ins = tasks.make_instruction(scene, rng, "heldout")
        assert ins.gait in ins.text and ins.text.endswith("gait")
        target = scene.target_object
        if task == "distinguish":
            assert f" {target.letter}" in ins.text
        elif task in ("go_to", "go_avoid", "unload"):
            assert target.color in ins.text


def test_letters_are_legible_in_the_camera_image():
    env = make_env("distinguish", image_size=(120, 120))
    env.reset(seed=3)
    target = np.array(env.scene.target_object.pos[:2])
    env._xy = target - np.array([1.0, 0.0])  # 1 m in front of the target box
    env._yaw = 0.0
    env._pose_robot()
    image = env.render()
    box = image[30:90, 30:90].mean(axis=2)
    assert (box > 200).mean() > 0.1 and (box < 60).mean() > 0.01  # white face, black glyph
    a, b = scenes.letter_image("a"), scenes.letter_image("b")
    assert (a != b).any() and (a < 60).mean() > 0.03


def test_command_mode_follows_velocity_with_lag_and_posture():
    env = make_env("go_to", render=False)
    env.reset(seed=0)
    env.step(command(vel_x=1.0))
    first = np.linalg.norm(env._vel)
    assert 0.3 < first < 0.95  # first-order lag, tau 0.25 s over 0.2 s
    for _ in range(5):
        env.step(command(vel_x=1.0))
    assert np.linalg.norm(env._vel) == pytest.approx(1.0, abs=0.03)
    x0 = env.base_pose()[0]
    for _ in range(5):  # 1 s: posture lag tau 0.15 s has settled
        env.step(command(vel_x=1.0, body_height=-0.08, body_pitch=0.2))
    x, _, z, yaw, pitch = env.base_pose()
    assert x - x0 == pytest.approx(1.0 * math.cos(yaw), abs=0.03)
    assert z == pytest.approx(NOMINAL_HEIGHT - 0.08, abs=0.01)
    assert pitch == pytest.approx(0.2, abs=0.01)


def test_bad_commands_raise_and_finished_episodes_refuse_steps():
    env = make_env("go_to", render=False, max_steps=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        env.step(np.full(12, np.nan))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(5))
    env.step(command())
    _, _, done, info = env.step(command())
    assert done and info["timeout"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(command())


def test_walking_into_the_obstacle_fails_the_episode():
    env = make_env("go_avoid", render=False)
    env.reset(seed=2)
    target = env.scene.target_object.pos
    yaw = math.atan2(target[1], target[0])
    env._yaw = yaw  # face the target: the obstacle is on this line
    done = False
    while not done:
        _, success, done, info = env.step(command(vel_x=1.0))
    assert not success and info["failure"] == "collided with obstacle"
    assert info["step"] < 20


def _world(xy, speed=0.0, yaw=0.0, **kw):
    return tasks.WorldState(np.asarray(xy, dtype=float), yaw, 0.0, 0.3, speed=speed, **kw)


def test_go_to_needs_stopping_inside_the_radius():
    scene = scenes.sample_scene("go_to", np.random.default_rng(0))
    t = np.array(scene.target_object.pos[:2])
    facing = math.atan2(t[1], t[0])  # on the start->target line, facing the target
    near, far = t * (1 - 0.7 / np.linalg.norm(t)), t * (1 - 1.2 / np.linalg.norm(t))
    checker = tasks.SuccessChecker(scene)
    assert checker.update(_world(near, speed=1.0, yaw=facing)) == (False, None)  # passing by
    assert checker.update(_world(far, yaw=facing)) == (False, None)  # stopped too far
    assert checker.update(_world(near, yaw=facing))[0]
    assert checker.update(_world([0.0, 0.0], speed=1.0))[0]  # sticky


def test_crawl_needs_passing_under_the_bar():
    scene = scenes.sample_scene("crawl", np.random.default_rng(0))
    goal = tasks.goal_point(scene)
    around = tasks.SuccessChecker(scene)
    assert not around.update(_world(goal))[0]  # arrived without crossing the gate line
    through = tasks.SuccessChecker(scene)
    axis = np.array([math.cos(scene.frame_yaw), math.sin(scene.frame_yaw)])
    for u in (-0.5, -0.1, 0.3, 1.0):
        through.update(_world(np.asarray(scene.frame_pos) + u * axis, speed=1.0))
    assert through.update(_world(goal))[0]


def test_unload_success_depends_on_where_the_ball_lands():
    scene = scenes.sample_scene("unload", np.random.default_rng(0))
    right, wrong = scene.target_object, scene.distractor()
    for ball_xy, expected in ((right.pos[:2], (True, None)),
                              (wrong.pos[:2], (False, "ball landed in the wrong tray")),
                              ((0.0, 0.0), (False, "ball landed outside the trays"))):
        checker = tasks.SuccessChecker(scene)
        ball = np.array([*ball_xy, 0.1])
        assert checker.update(_world([0, 0], ball_pos=ball, ball_landed=False)) == (False, None)
        assert checker.update(_world([0, 0], ball_pos=ball, ball_landed=True)) == expected


def test_pitching_at_the_tray_drops_the_ball_in_front():
    env = make_env("unload", render=False)
    env.reset(seed=0)
    done, steps = False, 0
    while not done and steps < 4:
        _, success, done, info = env.step(command(body_pitch=0.36))
        steps += 1
    assert done and not success and info["failure"] == "ball landed outside the trays"
    ball = env.world_state().ball_pos
    assert env._ball_landed and ball[2] < 0.05
    assert ball[0] == pytest.approx(0.42, abs=0.05)  # off the nose, robot at the origin
