"""Tasks solvable from one frame: scene rules, checker rules, observability, oracle, blind."""

import json
import math
import os

import numpy as np
import pytest

from more_policy.baselines.blind import Schedule, fit_blind, schedule_command
from more_policy.baselines.oracle import OraclePolicy, to_robot_frame
from more_policy.baselines.views import frame_views, relevant_in_view
from more_policy.experiments.benchmark import (
    GATES,
    BenchmarkConfig,
    observability,
    run_gates,
    run_table1,
    wilson,
)
from more_policy.sim import scenes, tasks
from more_policy.sim.env import make_env
from more_policy.sim.evaluate import evaluate

os.environ.setdefault("MUJOCO_GL", "egl")
pytestmark = pytest.mark.sim


def _world(xy, yaw=0.0, **kw):
    return tasks.WorldState(np.asarray(xy, dtype=float), yaw, 0.0, 0.3, **kw)


@pytest.mark.parametrize("task", ["go_to", "distinguish", "go_avoid", "unload"])
def test_target_and_distractor_stand_in_view_and_off_the_straight_path(task):
    rng = np.random.default_rng(0)
    bearings, ranges = [], []
    for _ in range(60):
        scene = scenes.sample_scene(task, rng)
        t = np.array(scene.target_object.pos[:2])
        d = np.array(scene.distractor().pos[:2])
        for xy in (t, d):
            bearings.append(math.atan2(xy[1], xy[0]))
            ranges.append(np.linalg.norm(xy))
        off_line = abs(t[0] * d[1] - t[1] * d[0]) / np.linalg.norm(t)
        assert off_line >= scenes.DISTRACTOR_OFF_LINE - 1e-9
        assert np.linalg.norm(t - d) >= scenes.DISTRACTOR_GAP - 1e-9
    assert max(map(abs, bearings)) <= scenes.FAN_HALF_ANGLE
    lo, hi = scenes.FANS[task]
    assert lo <= min(ranges) and max(ranges) <= hi
    # spread: both sides, near and far (a blind walk cannot know where to go)
    assert min(bearings) < -0.25 and max(bearings) > 0.25 and hi - max(ranges) < 0.5


def test_passages_carry_a_goal_marker_beyond_the_stop_point_and_trays_a_flag():
    rng = np.random.default_rng(1)
    for task in ("go_through", "crawl"):
        scene = scenes.sample_scene(task, rng)
        marker = np.array(scene.object("goal_marker").pos[:2])
        goal = tasks.goal_point(scene)
        axis = np.array([math.cos(scene.frame_yaw), math.sin(scene.frame_yaw)])
        np.testing.assert_allclose(marker, goal + scenes.MARKER_GAP * axis, atol=1e-9)
        lo, hi = scenes.PASSAGE_GOAL_BEYOND
        assert lo <= scene.goal_beyond <= hi
    scene = scenes.sample_scene("unload", rng)
    for tray in ("target", "distractor"):
        flag = scene.object(f"{tray}_flag")
        assert flag.color == scene.object(tray).color
        gap = np.linalg.norm(np.array(flag.pos[:2]) - scene.object(tray).pos[:2])
        assert gap == pytest.approx(scenes.FLAG_DISTANCE)  # beyond the far rim
        assert gap > scenes.TRAY_RADIUS + tasks.TRAY_MARGIN  # clear of where a ball scores
    make_env("unload", render=False).reset(seed=0)  # the flags compile into the model


def test_go_to_needs_stopping_close_facing_the_target_and_nearer_it_than_the_distractor():
    scene = scenes.sample_scene("go_to", np.random.default_rng(0))
    t = np.array(scene.target_object.pos[:2])
    d = np.array(scene.distractor().pos[:2])

    def check(xy, yaw):
        return tasks.SuccessChecker(scene).update(_world(xy, yaw))[0]

    def facing(xy):
        return math.atan2(*(t - xy)[::-1])

    near = t + 0.7 * (t - d) / np.linalg.norm(t - d)  # on the far side from the distractor
    assert check(near, facing(near))
    assert not check(near, facing(near) + math.radians(30))  # not facing it
    far = t - [0.9, 0.0]  # outside the 0.8 m radius (QUART's 1.0 m would pass)
    assert not check(far, facing(far))
    # between target and distractor, closer to the distractor: no success
    scene.object("distractor").pos = (*(t + [0.6, 0.0]), 0.15)
    between = t + [0.45, 0.0]
    assert not check(between, facing(between))


def test_passage_success_is_at_the_marked_stop_point():
    scene = scenes.sample_scene("go_through", np.random.default_rng(3))
    axis = np.array([math.cos(scene.frame_yaw), math.sin(scene.frame_yaw)])
    checker = tasks.SuccessChecker(scene)
    for u in (-0.3, 0.2, 0.6, 1.2):
        checker.update(_world(np.asarray(scene.frame_pos) + u * axis, speed=1.0))
    stop = np.asarray(scene.frame_pos) + (scenes.TUNNEL_LENGTH + scene.goal_beyond) * axis
    assert not checker.update(_world(stop + 0.7 * axis))[0]  # stopped past it
    assert checker.update(_world(stop + 0.3 * axis))[0]


@pytest.mark.parametrize("task", scenes.TASKS)
def test_expert_frames_show_the_task_relevant_object(task):
    assert observability([task], episodes=3, seed=10000)[task] >= 0.95


def test_views_agree_with_the_rendered_frame():
    env = make_env("distinguish", image_size=(240, 240))
    obs = env.reset(seed=5)
    view = frame_views(env)
    assert relevant_in_view(view, "distinguish")
    box = view.objects["target"]
    pixel = obs.image[int(box.v), int(box.u)]
    assert pixel.min() > 180 or pixel.max() < 60  # white face or black glyph of the box
    x, y, _, yaw, _ = env.base_pose()
    c, s = math.cos(yaw), math.sin(yaw)
    world = np.array([x, y]) + np.array([[c, -s], [s, c]]) @ to_robot_frame(view, "target",
                                                                          env.camera)
    np.testing.assert_allclose(world, env.scene.target_object.pos[:2], atol=0.02)
    env.close()


@pytest.mark.parametrize("task", scenes.TASKS)
def test_the_single_frame_oracle_solves_each_task(task):
    result = evaluate(OraclePolicy(), [task], episodes=2, seed=10000, progress=False)
    assert result.tasks[task] == 1.0


def test_the_oracle_keeps_no_memory_between_frames():
    env = make_env("go_avoid", render=False)
    env.reset(seed=4)
    oracle = OraclePolicy()
    oracle.reset(0, env, 4)
    view = frame_views(env)
    first = oracle.act_on(oracle._experts[0], "go_avoid", env.instruction, view)
    for _ in range(3):
        env.step(first)
    np.testing.assert_array_equal(
        oracle.act_on(oracle._experts[0], "go_avoid", env.instruction, view), first)


def test_blind_schedules_are_open_loop_and_fail_held_out_go_to():
    env = make_env("crawl", render=False)
    env.reset(seed=0)
    schedule = Schedule("straight", 4, [[0.5, 0.0, 0.0]])
    commands = [schedule_command(schedule, "crawl", env.instruction, k, env.action_space)
                for k in range(5)]
    assert all(c[7] < -0.05 for c in commands)  # crouched the whole way
    assert commands[0][0] == env.instruction.speed and commands[4][-1] == 1.0
    blind = fit_blind("go_to", episodes=4, stop_steps=(6, 10, 14))
    assert blind.schedules["go_to"].stop in (6, 10, 14)
    result = evaluate(blind, ["go_to"], episodes=4, seed=10000, progress=False)
    assert result.tasks["go_to"] <= 0.25


def test_table1_rows_cannot_shadow_the_built_in_ones():
    with pytest.raises(ValueError, match="Scripted expert"):
        BenchmarkConfig(policies={"Scripted expert": "random-tiny"})


def test_wilson_interval():
    lo, hi = wilson(16, 16)
    assert hi == 1.0 and 0.79 < lo < 0.81
    lo, hi = wilson(0, 32)
    assert lo == 0.0 and 0.10 < hi < 0.11


@pytest.mark.slow
def test_gates_and_table1_commands_write_their_reports(tmp_path):
    cfg = BenchmarkConfig(out=str(tmp_path), episodes=2, physics_episodes=1,
                          blind_fit_episodes=1, tasks="go_to")
    report = run_gates(cfg)
    assert set(report["gates"]) == set(GATES)
    assert report["gates"]["oracle"]["per_task"] == {"go_to": 1.0}
    assert report["gates"]["expert_physics"]["per_task"] == {"go_to": 1.0}
    assert report["passed"] == all(g["passed"] for g in report["gates"].values())
    assert "| observability | >= 0.95 |" in (tmp_path / "gates.md").read_text()
    cfg.policies = {"Untrained MoRE": "random-tiny"}  # any `more eval --policy` spec
    table = run_table1(cfg)  # reuses the gates' evaluations (out/runs)
    assert list(table["rows"]) == ["Random", "Blind", "Perception oracle", "Untrained MoRE",
                                   "Scripted expert"]
    assert table["rows"]["Untrained MoRE"]["go_to"]["episodes"] == 2
    expert = table["rows"]["Scripted expert"]["go_to"]
    assert expert["success"] == 1.0 and expert["episodes"] == 2
    assert expert["success_ci95"][1] == 1.0 and expert["success_ci95"][0] < 0.5
    saved = json.loads((tmp_path / "table1.json").read_text())
    assert saved["rows"]["Blind"]["go_to"]["success"] == report["gates"]["blind"]["per_task"][
        "go_to"]
    assert "| Scripted expert |" in (tmp_path / "table1.md").read_text()


def test_table1_rerun_reuses_a_learned_row_until_its_checkpoint_changes(tmp_path):
    from more_policy.model import MoREConfig, MoREPolicy

    def save_policy(seed):
        cfg = MoREConfig(backbone="tiny", image_size=32, num_experts=2, lora_rank=2,
                         attn_lora_rank=2)
        MoREPolicy.from_config(cfg, seed=seed).save_pretrained(tmp_path / "more")

    save_policy(0)
    cfg = BenchmarkConfig(out=str(tmp_path / "bench"), episodes=1, blind_fit_episodes=1,
                          tasks="go_to", policies={"MoRE (w/ RL)": str(tmp_path / "more")})
    run_table1(cfg)
    cache = tmp_path / "bench" / "runs" / "MoRE_w_RL__command.json"  # row names are free text
    first = cache.stat().st_mtime_ns
    cfg.policies = {"MoRE (w/ RL)": str(tmp_path / "more"), "Untrained": "random-tiny"}
    table = run_table1(cfg)  # the new row is evaluated, the unchanged checkpoint is not
    assert list(table["rows"]) == ["Random", "Blind", "Perception oracle", "MoRE (w/ RL)",
                                   "Untrained", "Scripted expert"]
    assert cache.stat().st_mtime_ns == first
    save_policy(1)  # other weights under the same name: evaluated again
    run_table1(cfg)
    assert cache.stat().st_mtime_ns != first
