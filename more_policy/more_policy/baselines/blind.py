"""The blind baseline: the best open-loop command schedule per task, fitted on training data.

It never sees an image; it reads the instruction (task, speed word, gait) and counts steps.
Candidates per task: the time-indexed mean of the scripted expert's commands on the training
scenes, and a straight walk at the instruction's speed, each ended by terminate after N steps
(N = 2..50: every 4th, then +-2 around the best), with the task's posture added where a blind
robot can afford it (crouch the whole way for crawl; tilt for the ball in the last steps of
unload). :func:`fit_blind` scores every
candidate on training scenes and keeps the best per task. If the best blind schedule reaches
<= 0.10 on held-out scenes, the task cannot be solved without looking.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from more_policy.actions import ActionSpace
from more_policy.sim import expert as sim_expert
from more_policy.sim.env import make_env
from more_policy.sim.generate import episode_seed, parse_tasks
from more_policy.sim.tasks import Instruction

KINDS = ("mean", "straight")
STOP_STEPS = tuple(range(2, 51, 4))  # coarse grid; the best is refined by +-2 steps
TILT_STEPS = 3  # unload: tilt for the ball this many steps before terminating
MOTION = slice(0, 3)  # vel_x, vel_y, yaw_rate


@dataclass
class Schedule:
    """One open-loop schedule: ``kind`` of motion, terminate at step ``stop``."""

    kind: str
    stop: int
    mean_motion: list[list[float]]  # (T, 3) expert mean of vel_x, vel_y, yaw_rate by step
    train_success: float | None = None  # on the training scenes, once scored


def schedule_command(schedule: Schedule, task: str, instruction: Instruction, step: int,
                     space: ActionSpace) -> np.ndarray:
    """The command of ``schedule`` at ``step`` (0-based) for ``instruction``."""
    expert = sim_expert.ScriptedExpert(space)
    expert.instruction = instruction
    cmd = expert.base_command()
    if step >= schedule.stop:
        cmd[space.index("terminate")] = 1.0
    elif schedule.kind == "straight":
        cmd[space.index("vel_x")] = instruction.speed
    else:
        mean = schedule.mean_motion
        cmd[MOTION] = mean[min(step, len(mean) - 1)]
    if task == "crawl":
        cmd[space.index("body_height")] = sim_expert.CROUCH_HEIGHT
    if task == "unload" and step >= schedule.stop - TILT_STEPS:
        cmd[MOTION] = 0.0
        cmd[space.index("body_pitch")] = sim_expert.UNLOAD_PITCH
    return space.clip(cmd)


class BlindPolicy:
    """Plays each task's fitted :class:`Schedule` (evaluator interface; no images)."""

    name = "blind"
    needs_images = False

    def __init__(self, schedules: dict[str, Schedule], action_space: ActionSpace | None = None):
        self.schedules, self.space = schedules, action_space or ActionSpace()
        self._steps: dict[int, int] = {}

    def reset(self, slot: int, env, seed: int) -> None:
        if env.task not in self.schedules:
            raise ValueError(f"no blind schedule fitted for task {env.task!r}")
        self._steps[slot] = 0

    def act(self, slots: list[int], envs: list, obs: list) -> np.ndarray:
        out = []
        for s, env in zip(slots, envs):
            out.append(schedule_command(self.schedules[env.task], env.task, env.instruction,
                                        self._steps[s], self.space))
            self._steps[s] += 1
        return np.stack(out)

    def to_dict(self) -> dict:
        return {task: {k: v for k, v in asdict(s).items() if k != "mean_motion"}
                for task, s in self.schedules.items()}


def expert_mean_motion(task: str, episodes: int, seed: int = 0,
                       space: ActionSpace | None = None) -> list[list[float]]:
    """Time-indexed mean (vel_x, vel_y, yaw_rate) of the expert on training scenes."""
    space = space or ActionSpace()
    env = make_env(task, seed=seed, render=False, action_space=space)
    runs = []
    for i in range(episodes):
        env.reset(seed=episode_seed(seed, task, i))
        expert = sim_expert.ScriptedExpert(space)
        expert.reset(env.scene, env.instruction, env.base_pose())
        motion, done = [], False
        while not done:
            cmd = expert.act(env.base_pose())
            motion.append(cmd[MOTION])
            _, _, done, _ = env.step(cmd)
        runs.append(np.array(motion))
    env.close()
    length = max(len(r) for r in runs)
    padded = np.full((len(runs), length, 3), np.nan)
    for i, r in enumerate(runs):
        padded[i, :len(r)] = r
    return np.nan_to_num(np.nanmean(padded, axis=0)).round(4).tolist()


def schedule_success(schedule: Schedule, task: str, episodes: int, seed: int = 0,
                     space: ActionSpace | None = None) -> float:
    """Success rate of ``schedule`` on ``episodes`` scenes of ``task`` (command mode)."""
    space = space or ActionSpace()
    env = make_env(task, seed=seed, render=False, action_space=space)
    wins = 0
    for i in range(episodes):
        env.reset(seed=episode_seed(seed, task, i))
        step, done, success = 0, False, False
        while not done:
            _, success, done, _ = env.step(schedule_command(schedule, task, env.instruction,
                                                            step, space))
            step += 1
        wins += bool(success)
    env.close()
    return wins / episodes


def _best(task: str, candidates: list[Schedule], episodes: int, seed: int,
          space: ActionSpace) -> Schedule:
    """The candidate with the highest training success (the first of equals)."""
    for c in candidates:
        if c.train_success is None:
            c.train_success = schedule_success(c, task, episodes, seed, space)
    return max(candidates, key=lambda c: c.train_success)


def fit_blind(tasks: str | list[str] = "all", episodes: int = 16, seed: int = 0,
              space: ActionSpace | None = None,
              stop_steps: tuple[int, ...] = STOP_STEPS) -> BlindPolicy:
    """The best schedule per task on ``episodes`` training scenes of ``seed`` (see module)."""
    space = space or ActionSpace()
    schedules = {}
    for task in parse_tasks(tasks):
        mean = expert_mean_motion(task, episodes, seed, space)
        best = _best(task, [Schedule(k, n, mean) for k in KINDS for n in stop_steps],
                     episodes, seed, space)
        refine = [Schedule(best.kind, best.stop + d, mean) for d in (-2, 2)
                  if best.stop + d >= 1 and best.stop + d not in stop_steps]
        best = _best(task, [best, *refine], episodes, seed, space)
        schedules[task] = best
    return BlindPolicy(schedules, space)
