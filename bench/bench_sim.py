"""Simulation speed and expert quality, each next to its target.

    python bench/bench_sim.py [--episodes 50] [--frames 200]

- camera frames/s at 240x240 (target >= 30 on our 2-core CPU, MUJOCO_GL=egl)
- command-mode sim speed, x real time, without and with a rendered observation per step
  (target >= 20x)
- physics-mode speed (PD law at every 5 ms physics step, analytic gait controller at 50 Hz)
- scripted-expert and random success per task over seeded episodes (target >= 0.95 / ~0)
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
from common import Report  # noqa: E402

from more_policy.actions import ActionSpace  # noqa: E402
from more_policy.sim.env import make_env  # noqa: E402
from more_policy.sim.evaluate import RandomPolicy, evaluate  # noqa: E402
from more_policy.sim.generate import episode_seed, run_episode  # noqa: E402
from more_policy.sim.scenes import TASKS  # noqa: E402


def bench_render(frames: int) -> float:
    env = make_env("distinguish", image_size=(240, 240))
    env.reset(seed=0)
    env.render()
    start = time.perf_counter()
    for _ in range(frames):
        env.render()
    return frames / (time.perf_counter() - start)


def bench_command_mode(steps: int, render: bool) -> float:
    env = make_env("go_through", image_size=(240, 240), render=render, max_steps=10**6)
    env.reset(seed=0)
    cmd = ActionSpace().default_command()
    cmd[0], cmd[2] = 0.3, 0.4  # walk a circle: no episode end, no collision
    start = time.perf_counter()
    for _ in range(steps):
        env.step(cmd)
    return steps * env.policy_dt / (time.perf_counter() - start)


def bench_physics_mode(steps: int) -> float:
    from more_policy.control.gait import GaitController

    env = make_env("go_to", mode="physics", controller=GaitController(), render=False,
                   max_steps=10**6)
    env.reset(seed=0)
    cmd = ActionSpace().default_command()
    cmd[0] = 0.3
    start = time.perf_counter()
    for _ in range(steps):
        env.step(cmd)
    return steps * env.policy_dt / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50, help="expert episodes per task")
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"MUJOCO_GL={os.environ['MUJOCO_GL']}")
    report = Report()
    with report.section("render 240x240"):
        report.add("render 240x240", bench_render(args.frames), "frames/s", 30,
                   higher_is_better=True)
    with report.section("command mode"):
        report.add("command mode, no render", bench_command_mode(500, render=False),
                   "x realtime", 20, higher_is_better=True)
        report.add("command mode + 240 image", bench_command_mode(200, render=True),
                   "x realtime", 20, higher_is_better=True, note="5 Hz frames")
    with report.section("physics mode"):
        report.add("physics mode (gait ctrl)", bench_physics_mode(50), "x realtime")
    for task in TASKS:
        with report.section(f"expert success {task}"):
            env = make_env(task, render=False)
            start = time.perf_counter()
            ok = [run_episode(task, episode_seed(1234, task, i), "expert", env=env).success
                  for i in range(args.episodes)]
            report.add(f"expert success {task}", np.mean(ok), "rate", 0.95,
                       higher_is_better=True, note=f"{args.episodes} seeded episodes, "
                       f"{(time.perf_counter() - start) / len(ok):.2f} s/episode")
    with report.section("random policy average"):
        result = evaluate(RandomPolicy(), "all", episodes=min(args.episodes, 25), seed=1234,
                          progress=False)
        # "~0": a random 12-d command should essentially never solve a task.
        report.add("random policy average success", result.average, "rate", 0.05)
    return report.finish()


if __name__ == "__main__":
    raise SystemExit(main())
