"""Scripted expert, sub-optimal data, dataset generation, closed-loop evaluation, CLI."""

import argparse
import json
import os

import numpy as np
import pytest

from more_policy.sim import scenes
from more_policy.sim.env import make_env
from more_policy.sim.evaluate import EpisodeResult, ExpertPolicy, RandomPolicy, evaluate
from more_policy.sim.generate import episode_seed, generate, run_episode

os.environ.setdefault("MUJOCO_GL", "egl")
pytestmark = pytest.mark.sim
EXPERT_EPISODES = 20


@pytest.mark.parametrize("task", scenes.TASKS)
def test_expert_succeeds_on_at_least_95_percent(task):
    env = make_env(task, render=False)
    results = [run_episode(task, episode_seed(11, task, i), "expert", env=env)
               for i in range(EXPERT_EPISODES)]
    rate = np.mean([r.success for r in results])
    assert rate >= 0.95, [r.meta["failure"] for r in results if not r.success]
    ok = next(r for r in results if r.success)
    assert ok.commands[-1, -1] == 1.0 and not ok.commands[:-1, -1].any()  # terminate once, last
    if task == "crawl":  # posture: crouched under the bar
        assert ok.commands[:, 7].min() <= -0.08
    if task == "unload":  # posture: pitched nose-down at the tray
        assert ok.commands[:, 8].max() >= 0.3


def test_random_policy_is_near_zero():
    result = evaluate(RandomPolicy(), "all", episodes=6, seed=0, progress=False)
    assert result.average <= 0.05


def test_progress_measures_the_way_covered_to_the_goal():
    expert = evaluate(ExpertPolicy(), "go_to,go_through", episodes=3, seed=2, progress=False)
    for episode in expert.episodes:  # it starts metres away and ends at the goal
        assert episode.start_distance > 0.5 and episode.end_distance < 0.5 * episode.start_distance
    assert min(expert.progress.values()) > 0.6
    random = evaluate(RandomPolicy(), "go_to,go_through", episodes=3, seed=2, progress=False)
    assert random.average_progress < expert.average_progress - 0.2
    assert "progress" in expert.table().splitlines()[2]
    walk = EpisodeResult("go_to", 0, 0, start_distance=2.0, end_distance=0.5)
    assert walk.progress == 0.75  # timed out three quarters of the way there
    walk.failure = "collided with target"
    assert walk.progress == 0.0  # a failed episode made no progress
    away = EpisodeResult("go_to", 0, 0, start_distance=2.0, end_distance=2.5)
    assert away.progress == 0.0  # moving away counts as no progress, not negative
    assert EpisodeResult("go_to", 0, 0).progress == 0.0  # a broken episode has none


def test_suboptimal_episodes_are_mostly_failures_labelled_by_the_checker():
    env = make_env("go_to", render=False)
    records = [run_episode("go_to", episode_seed(0, "go_to", i), "suboptimal", env=env)
               for i in range(12)]
    assert np.mean([r.success for r in records]) < 0.5
    assert len({r.meta["perturbation"] for r in records}) >= 3
    for r in records[:6]:  # the label is what the checker says when the commands are replayed
        env.reset(seed=r.meta["seed"])
        for cmd in r.commands:
            _, success, done, _ = env.step(cmd)
        assert done and success == r.success


def test_evaluation_is_reproducible_by_seed_and_batching(tmp_path):
    a = evaluate(RandomPolicy(), "go_to,crawl", episodes=3, seed=5, batch_size=3,
                 progress=False)
    b = evaluate(RandomPolicy(), "go_to,crawl", episodes=3, seed=5, batch_size=2,
                 progress=False)
    c = evaluate(RandomPolicy(), "go_to,crawl", episodes=3, seed=6, batch_size=3,
                 progress=False)
    assert a.to_dict() == b.to_dict()
    assert [e.instruction for e in a.episodes] != [e.instruction for e in c.episodes]
    assert a.table().splitlines()[0].split() == ["Method", "Go", "to", "Crawl", "Avg"]
    paths = a.save(tmp_path)
    saved = json.loads(paths["json"].read_text())
    assert saved["success_rate"] == a.tasks and len(saved["episodes"]) == 6
    assert paths["plot"].stat().st_size > 1000


class NaNPolicy:
    """Emits NaN for odd slots: their episodes must fail with a reason, the rest go on."""

    name, needs_images = "nan", False

    def __init__(self):
        self.expert = ExpertPolicy()

    def reset(self, slot, env, seed):
        self.expert.reset(slot, env, seed)

    def act(self, slots, envs, obs):
        out = self.expert.act(slots, envs, obs)
        out[[i for i, s in enumerate(slots) if s % 2]] = np.nan
        return out


def test_raising_episodes_count_as_failures_and_evaluation_goes_on():
    result = evaluate(NaNPolicy(), "go_to", episodes=4, seed=0, batch_size=4, progress=False)
    bad = [e for e in result.episodes if e.index % 2]
    good = [e for e in result.episodes if not e.index % 2]
    assert all(not e.success and "non-finite" in e.error for e in bad)
    assert all(e.success and e.error is None for e in good)
    assert result.tasks["go_to"] == 0.5


def test_checkpoint_policy_runs_in_closed_loop(tmp_path):
    from more_policy.model import MoREConfig, MoREPolicy
    from more_policy.sim.evaluate import CheckpointPolicy

    MoREPolicy.from_config(MoREConfig(backbone="tiny")).save_pretrained(tmp_path / "ckpt")
    policy = CheckpointPolicy(tmp_path / "ckpt")
    result = evaluate(policy, "go_to", episodes=2, seed=0, batch_size=2, max_steps=2,
                      image_size=(60, 60), progress=False)
    assert [e.error for e in result.episodes] == [None, None]
    assert all(e.steps >= 1 for e in result.episodes)


def test_generated_data_passes_dataset_validation(tmp_path):
    from more_policy.data import EpisodeDataset
    from more_policy.data.validate import validate_dataset

    summary = generate("go_to,unload", 1, "expert", tmp_path / "exp", seed=1,
                       image_size=(48, 48), progress=False)
    assert summary == {"go_to": {"episodes": 1, "successes": 1},
                       "unload": {"episodes": 1, "successes": 1}}
    generate("crawl", 2, "suboptimal", tmp_path / "sub", seed=1, image_size=(48, 48),
             progress=False)
    for name in ("exp", "sub"):
        assert validate_dataset(tmp_path / name) == []
    table = EpisodeDataset(tmp_path / "sub", shuffle=False).episodes_table().to_pydict()
    assert set(table["source"]) == {"suboptimal"} and table["task"] == ["crawl", "crawl"]


def _cli(argv):
    from more_policy.sim.cli import register

    parser = argparse.ArgumentParser(prog="more")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_generate_and_eval(tmp_path, capsys):
    assert _cli(["sim", "generate", "--task", "fly", "--episodes", "1", "--out",
                 str(tmp_path / "d")]) == 2
    assert "unknown task" in capsys.readouterr().err
    assert _cli(["eval", "--policy", "expert", "--tasks", "go_to", "--episodes", "2",
                 "--out", str(tmp_path / "ev"), "--videos", "1", "--image-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "Go to" in out and "1.00" in out
    assert (tmp_path / "ev" / "results.json").exists()
    assert (tmp_path / "ev" / "go_to_000.mp4").stat().st_size > 1000
    assert _cli(["sim", "show", "--task", "crawl", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 1000
