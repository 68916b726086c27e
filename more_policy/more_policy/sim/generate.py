"""Expert and sub-optimal episode generation into an episode dataset.

    more sim generate --task all --episodes 50 --quality suboptimal --out data/sim_sub

Sub-optimal episodes perturb the scripted expert (noise, wrong target, drift, early or late
termination, wrong posture). Every episode, expert or not, is labelled by the task's success
checker, never by the kind of perturbation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from more_policy.actions import ActionSpace
from more_policy.sim import expert as sim_expert
from more_policy.sim.env import make_env
from more_policy.sim.scenes import TASKS, SceneError

QUALITIES = ("expert", "suboptimal")
PERTURBATIONS = ("noise", "wrong_target", "drift", "early_stop", "late_stop", "wrong_posture")


def episode_seed(seed: int, task: str, episode: int) -> int:
    """The scene seed of episode ``episode`` of ``task``: independent of batching and order."""
    if task not in TASKS:
        raise SceneError(f"unknown task {task!r}; choose from {TASKS}")
    return int(np.random.SeedSequence([seed, TASKS.index(task), episode]).generate_state(1)[0])


def parse_tasks(spec: str | list[str]) -> list[str]:
    """'all', 'go_to,crawl' or a list -> task names (unknown names raise SceneError)."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip() for n in names if n.strip()]
    if names == ["all"]:
        return list(TASKS)
    unknown = [n for n in names if n not in TASKS]
    if unknown or not names:
        raise SceneError(f"unknown task(s) {unknown or names}; choose from {TASKS} or 'all'")
    return names


class SuboptimalExpert:
    """The scripted expert with one perturbation per episode (drawn from ``rng``)."""

    def __init__(self, rng: np.random.Generator, action_space: ActionSpace | None = None,
                 kind: str | None = None):
        if kind is not None and kind not in PERTURBATIONS:
            raise ValueError(f"unknown perturbation {kind!r}; choose from {PERTURBATIONS}")
        self.rng, self.fixed_kind = rng, kind
        self.expert = sim_expert.ScriptedExpert(action_space)
        self.space = self.expert.space

    def reset(self, scene, instruction, start_pose) -> None:
        rng = self.rng
        self.kind = self.fixed_kind or PERTURBATIONS[rng.integers(len(PERTURBATIONS))]
        wrong = "distractor" if self.kind == "wrong_target" and scene.distractor() else None
        self.expert.reset(scene, instruction, start_pose, target=wrong)
        self.stop_fraction = rng.uniform(0.2, 0.7)
        # odometry drift: the believed position walks off at 0.25-0.4 m/s, heading off too
        angle = rng.uniform(-math.pi, math.pi)
        self.drift_velocity = rng.uniform(0.25, 0.4) * np.array([math.cos(angle),
                                                                   math.sin(angle)])
        self.drift_yaw = rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.4)
        self._steps = 0
        p = self.expert.plan
        if self.kind == "late_stop":  # brakes too late: overshoots the goal
            p.stop_distance -= rng.uniform(0.9, 1.5)
        if self.kind == "wrong_target" and wrong is None:  # passage tasks: aim beside it
            p.path[1:] += rng.choice([-1.0, 1.0]) * 0.55 * _normal(p.path[-1] - p.path[0])
        if self.kind == "wrong_posture":
            if scene.task == "go_avoid":  # straight at the target, ignoring the obstacle
                self.expert.plan = sim_expert.Plan([p.path[0], p.path[-1]], p.stop_distance)
            elif scene.task in ("go_to", "distinguish"):  # stops too far away
                p.stop_distance = 1.8
            elif scene.task == "go_through":
                p.path[1:] += rng.choice([-1.0, 1.0]) * 0.35 * _normal(p.path[-1] - p.path[0])

    def act(self, pose: np.ndarray) -> np.ndarray:
        kind, rng, p = self.kind, self.rng, self.expert.plan
        pose = np.array(pose, dtype=float)
        self._steps += 1
        if kind == "drift":
            pose[:2] += self._steps * 0.2 * self.drift_velocity
            pose[3] += self.drift_yaw
        cmd = self.expert.act(pose)
        if kind == "noise":
            cmd[[0, 1, 2, 7, 8]] += rng.normal(0.0, [0.8, 0.3, 1.0, 0.03, 0.08])
        elif kind == "early_stop" and p.project(pose[:2]) >= self.stop_fraction * p.goal_s:
            cmd[[0, 1, 2]], cmd[11] = 0.0, 1.0
        elif kind == "wrong_posture":
            if self.expert.scene.task == "crawl":
                cmd[7] = 0.0
            elif self.expert.scene.task == "unload" and cmd[8] > 0:  # tilts the wrong way
                cmd[8] = -cmd[8]
        return self.space.clip(cmd)


def _normal(direction: np.ndarray) -> np.ndarray:
    d = direction / max(np.linalg.norm(direction), 1e-9)
    return np.array([-d[1], d[0]])


@dataclass
class EpisodeRecord:
    frames: np.ndarray  # (T, H, W, 3) uint8, frame t is what command t was chosen from
    commands: np.ndarray  # (T, 12)
    instruction: str
    task: str
    success: bool
    meta: dict


def run_episode(task: str, seed: int, quality: str = "expert", *, mode: str = "command",
                image_size: tuple[int, int] = (240, 240), colors: str = "seen",
                phrasing: str = "train", max_steps: int = 100, env=None,
                perturbation: str | None = None) -> EpisodeRecord:
    """One scripted episode of ``task`` from scene seed ``seed``, labelled by the checker."""
    if quality not in QUALITIES:
        raise ValueError(f"unknown quality {quality!r}; choose from {QUALITIES}")
    env = env or make_env(task, seed=seed, mode=mode, image_size=image_size, colors=colors,
                          phrasing=phrasing, max_steps=max_steps)
    obs = env.reset(seed=seed)
    if quality == "expert":
        policy = sim_expert.ScriptedExpert(env.action_space)
    else:
        policy = SuboptimalExpert(np.random.default_rng(seed), env.action_space, perturbation)
    policy.reset(env.scene, env.instruction, env.base_pose())
    frames, commands, done, info = [], [], False, {}
    while not done:
        command = policy.act(env.base_pose())
        frames.append(obs.image)
        commands.append(command)
        obs, success, done, info = env.step(command)
    meta = {"seed": seed, "mode": env.mode, "colors": env.colors, "phrasing": env.phrasing,
            "steps": len(commands), "failure": info.get("failure"),
            "perturbation": getattr(policy, "kind", None),
            "scene": {"objects": [asdict(o) for o in env.scene.objects],
                      "frame_pos": list(env.scene.frame_pos), "frame_yaw": env.scene.frame_yaw,
                      "goal_beyond": env.scene.goal_beyond}}
    return EpisodeRecord(np.stack(frames), np.stack(commands), env.instruction.text, task,
                         bool(env.success), _jsonable(meta))


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def generate(tasks: str | list[str], episodes: int, quality: str, out_dir, *, seed: int = 0,
             image_size: tuple[int, int] = (240, 240), colors: str = "seen",
             phrasing: str = "train", max_steps: int = 100, append: bool = False,
             overwrite: bool = False, progress: bool = True) -> dict:
    """Write ``episodes`` scripted episodes per task to an episode dataset at ``out_dir``."""
    from more_policy.data import EpisodeWriter

    task_names = parse_tasks(tasks)
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if quality not in QUALITIES:
        raise ValueError(f"unknown quality {quality!r}; choose from {QUALITIES}")
    space = ActionSpace()
    summary = {task: {"episodes": 0, "successes": 0} for task in task_names}
    source = "expert" if quality == "expert" else "suboptimal"
    bar = tqdm(total=episodes * len(task_names), desc=f"sim {quality}", disable=not progress)
    with EpisodeWriter(out_dir, space, rate_hz=5.0, append=append, overwrite=overwrite) as w:
        for task in task_names:
            env = make_env(task, seed=seed, image_size=image_size, colors=colors,
                           phrasing=phrasing, max_steps=max_steps, action_space=space)
            for i in range(episodes):
                record = run_episode(task, episode_seed(seed, task, i), quality, env=env,
                                     colors=colors, phrasing=phrasing)
                w.add_episode(frames=record.frames, commands=record.commands,
                              instruction=record.instruction, task=task, source=source,
                              success=record.success, meta=record.meta)
                summary[task]["episodes"] += 1
                summary[task]["successes"] += int(record.success)
                bar.update(1)
                bar.set_postfix(task=task, ok=summary[task]["successes"])
            env.close()
    bar.close()
    return summary
