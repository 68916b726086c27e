"""Closed-loop evaluation of a policy on the six tasks (the paper's Table I).

    more eval --policy expert|random|CHECKPOINT_DIR --tasks all --episodes 25 --seed 0

Episode i of a task always gets the same scene (seeded from --seed, the task and i), whatever
the batch size, so results are reproducible by seed. Environments run in lockstep batches and
the policy acts on the whole batch at once when it can (a checkpoint's ``act`` takes lists).
An episode that raises is counted as a failure with its reason; the evaluation goes on.
"""

from __future__ import annotations

import json
import math
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from more_policy.actions import ActionSpace
from more_policy.sim.env import Go2TaskEnv, Observation, make_env
from more_policy.sim.expert import ScriptedExpert
from more_policy.sim.generate import episode_seed, parse_tasks
from more_policy.sim.tasks import goal_xy
from more_policy.sim.video import Caption, TopDownView, outcome_text, rollout_frame, write_video

TABLE_NAMES = {"distinguish": "Distinguish", "go_to": "Go to", "go_avoid": "Go avoid",
               "go_through": "Go through", "crawl": "Crawl", "unload": "Unload"}
RANDOM_TERMINATE_P = 0.02  # per step: a random policy that would always stop at once is moot


class ExpertPolicy:
    """The scripted expert (privileged: it reads the scene)."""

    name = "expert"
    needs_images = False

    def __init__(self, action_space: ActionSpace | None = None):
        self.space = action_space or ActionSpace()
        self._experts: dict[int, ScriptedExpert] = {}

    def reset(self, slot: int, env: Go2TaskEnv, seed: int) -> None:
        self._experts[slot] = ScriptedExpert(self.space)
        self._experts[slot].reset(env.scene, env.instruction, env.base_pose())

    def act(self, slots: list[int], envs: list[Go2TaskEnv], obs: list[Observation]) -> np.ndarray:
        return np.stack([self._experts[s].act(e.base_pose()) for s, e in zip(slots, envs)])


class RandomPolicy:
    """Uniform over every dimension's range; terminates with probability 0.02 per step."""

    name = "random"
    needs_images = False

    def __init__(self, action_space: ActionSpace | None = None):
        self.space = action_space or ActionSpace()
        self._rngs: dict[int, np.random.Generator] = {}

    def reset(self, slot: int, env: Go2TaskEnv, seed: int) -> None:
        self._rngs[slot] = np.random.default_rng(seed)

    def act(self, slots: list[int], envs: list[Go2TaskEnv], obs: list[Observation]) -> np.ndarray:
        out = []
        for s in slots:
            rng = self._rngs[s]
            cmd = rng.uniform(self.space.low, self.space.high)
            cmd[-1] = float(rng.random() < RANDOM_TERMINATE_P)
            out.append(cmd)
        return np.stack(out)


class CheckpointPolicy:
    """A MoRE model (a checkpoint directory, or random-<size> for an untrained one) or a CNN
    baseline directory (told apart by its config file): images + instructions in, (B, 12) SI
    commands out."""

    needs_images = True

    def __init__(self, spec: str | Path, quantization: str | None = None, seed: int = 0):
        from more_policy.baselines.cnn import CNNPolicy, is_cnn_checkpoint
        from more_policy.model.loading import RANDOM_CHECKPOINT_PREFIX, load_policy

        spec = str(spec)
        if not spec.startswith(RANDOM_CHECKPOINT_PREFIX) and not Path(spec).is_dir():
            raise FileNotFoundError(f"checkpoint directory {spec} does not exist")
        self.name = Path(spec).name
        if is_cnn_checkpoint(spec):
            self.model = CNNPolicy.from_pretrained(spec)
        else:
            self.model = load_policy(spec, quantization, seed=seed)
        self.model.eval()

    def reset(self, slot: int, env: Go2TaskEnv, seed: int) -> None:
        pass

    def act(self, slots: list[int], envs: list[Go2TaskEnv], obs: list[Observation]) -> np.ndarray:
        result = self.model.act([o.image for o in obs], [o.instruction for o in obs])
        return np.asarray(result.values, dtype=float)


def make_eval_policy(spec: str, quantization: str | None = None):
    """The evaluation policy a spec names: 'expert', 'random', a MoRE or CNN-baseline
    checkpoint directory or random-<size> (an untrained MoRE; see model/loading.py)."""
    if spec == "expert":
        return ExpertPolicy()
    if spec == "random":
        return RandomPolicy()
    return CheckpointPolicy(spec, quantization)


@dataclass
class EpisodeResult:
    task: str
    index: int
    seed: int
    instruction: str = ""
    success: bool = False
    steps: int = 0
    failure: str | None = None
    error: str | None = None
    start_distance: float = math.nan  # metres to the task's goal region at reset
    end_distance: float = math.nan  # ... when the episode ended
    timeout: bool = False  # ended by the step limit

    @property
    def outcome(self) -> str:
        """Why the episode ended, in a few words (the demo's table, video captions)."""
        if self.error:
            return f"error: {self.error.splitlines()[0]}"
        return outcome_text(self.success, self.failure, self.timeout, self.end_distance)

    @property
    def progress(self) -> float:
        """Share of the way to the goal region covered, in [0, 1]: a graded companion to success
        for policies that do not succeed yet. 0 when the episode failed (a collision, a fall,
        an error: walking blindly into the target is no progress) or ended farther away."""
        if self.success:
            return 1.0
        if self.failure is not None or not (self.start_distance > 0
                                            and math.isfinite(self.end_distance)):
            return 0.0
        return float(np.clip(1.0 - self.end_distance / self.start_distance, 0.0, 1.0))


@dataclass
class EvalResult:
    policy: str
    seed: int
    mode: str
    episodes_per_task: int
    colors: str = "seen"
    phrasing: str = "train"
    tasks: dict[str, float] = field(default_factory=dict)  # task -> success rate
    progress: dict[str, float] = field(default_factory=dict)  # task -> mean progress to goal
    episodes: list[EpisodeResult] = field(default_factory=list)

    @property
    def average(self) -> float:
        return float(np.mean(list(self.tasks.values()))) if self.tasks else math.nan

    @property
    def average_progress(self) -> float:
        return float(np.mean(list(self.progress.values()))) if self.progress else math.nan

    def table(self) -> str:
        """The paper's Table I layout: one row, a column per task, then the average."""
        cols = [TABLE_NAMES[t] for t in self.tasks] + ["Avg"]
        width = max(12, len(self.policy) + 2)
        head = f"{'Method':<{width}}" + "".join(f"{c:>12}" for c in cols)
        row = f"{self.policy:<{width}}" + "".join(
            f"{v:>12.2f}" for v in [*self.tasks.values(), self.average])
        progress = f"{'  progress':<{width}}" + "".join(
            f"{v:>12.2f}" for v in [*self.progress.values(), self.average_progress])
        return f"{head}\n{row}\n{progress}"

    def to_dict(self) -> dict:
        return {"policy": self.policy, "seed": self.seed, "mode": self.mode,
                "episodes_per_task": self.episodes_per_task, "colors": self.colors,
                "phrasing": self.phrasing, "success_rate": self.tasks,
                "average": self.average, "progress": self.progress,
                "average_progress": self.average_progress,
                "episodes": [asdict(e) for e in self.episodes]}

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write results.json and success.png (success and progress per task) into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "results.json", "plot": out / "success.png"}
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2))
        plot_success_progress([self], paths["plot"])
        return paths


def plot_success_progress(results: list[EvalResult], path: str | Path) -> Path:
    """Grouped bars per task (and the average): success rate and progress to the goal of each
    result side by side, progress hatched, values written on the bars."""
    from more_policy.plotting import pyplot

    if not results:
        raise ValueError("nothing to plot")
    plt = pyplot()
    tasks = list(results[0].tasks)
    x = np.arange(len(tasks) + 1)
    width = 0.8 / (2 * len(results))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(x)), 3.6))
    for k, r in enumerate(results):
        color = f"C{k}"
        for j, (label, values, hatch) in enumerate((
                ("success", [*(r.tasks[t] for t in tasks), r.average], None),
                ("progress", [*(r.progress[t] for t in tasks), r.average_progress], "//"))):
            offset = (2 * k + j + 0.5) * width - 0.4
            ax.bar(x + offset, values, width, color=color, alpha=1.0 if j == 0 else 0.45,
                   hatch=hatch, edgecolor=color, label=f"{r.policy}: {label}")
            for xi, v in zip(x + offset, values):
                ax.text(xi, v + 0.02, f"{v:.2f}", ha="center", fontsize=6, rotation=90)
    ax.set_xticks(x, [TABLE_NAMES[t] for t in tasks] + ["Avg"])
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("success rate / progress")
    episodes = ", ".join(f"{r.policy} {r.episodes_per_task}" for r in results)
    ax.set_title(f"success and progress to the goal (episodes per task: {episodes}; "
                 f"seed {results[0].seed})", fontsize=9)
    ax.legend(fontsize=7, ncol=len(results), loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def evaluate(policy, tasks: str | list[str] = "all", episodes: int = 25, seed: int = 0, *,
             mode: str = "command", controller_factory=None, batch_size: int = 8,
             image_size: tuple[int, int] = (240, 240), colors: str = "seen",
             phrasing: str = "train", max_steps: int = 100, video_dir: str | Path | None = None,
             videos_per_task: int = 1, progress: bool = True) -> EvalResult:
    """Run ``episodes`` seeded episodes of each task with ``policy``; see the module doc."""
    task_names = parse_tasks(tasks)
    if episodes < 1 or batch_size < 1:
        raise ValueError(f"episodes and batch_size must be >= 1, got {episodes}, {batch_size}")
    result = EvalResult(getattr(policy, "name", type(policy).__name__), seed, mode, episodes,
                        colors, phrasing)
    bar = tqdm(total=episodes * len(task_names), desc=f"eval {result.policy}",
               disable=not progress)
    render = getattr(policy, "needs_images", True) or video_dir is not None
    for task in task_names:
        envs = [make_env(task, seed=seed, mode=mode, image_size=image_size, colors=colors,
                         phrasing=phrasing, max_steps=max_steps, render=render,
                         controller=controller_factory() if controller_factory else None)
                for _ in range(min(batch_size, episodes))]
        task_results = []
        for start in range(0, episodes, len(envs)):
            indices = list(range(start, min(start + len(envs), episodes)))
            record = [video_dir is not None and i < videos_per_task for i in indices]
            batch = _run_batch(policy, task, envs, indices, seed, record, video_dir)
            task_results += batch
            bar.update(len(batch))
        for env in envs:
            env.close()
        result.episodes += task_results
        result.tasks[task] = float(np.mean([r.success for r in task_results]))
        result.progress[task] = float(np.mean([r.progress for r in task_results]))
        bar.set_postfix(**{task: f"{result.tasks[task]:.2f}"})
    bar.close()
    return result


def _run_batch(policy, task: str, envs: list[Go2TaskEnv], indices: list[int], seed: int,
               record: list[bool], video_dir) -> list[EpisodeResult]:
    results = [EpisodeResult(task, i, episode_seed(seed, task, i)) for i in indices]
    obs: dict[int, Observation] = {}
    frames: dict[int, list[np.ndarray]] = {s: [] for s in range(len(indices)) if record[s]}
    views: dict[int, TopDownView] = {}
    for slot, r in enumerate(results):
        try:
            obs[slot] = envs[slot].reset(seed=r.seed)
            r.instruction = envs[slot].instruction.text
            r.start_distance = r.end_distance = envs[slot].goal_distance()
            policy.reset(slot, envs[slot], r.seed)
            if slot in frames:
                views[slot] = TopDownView.framing(envs[slot].physics.model,
                                                  envs[slot].base_pose()[:2],
                                                  goal_xy(envs[slot].scene))
        except Exception as e:  # a broken episode is a failure with a reason
            _fail(r, e, obs, slot)
    while obs:
        slots = sorted(obs)
        try:
            commands = np.asarray(policy.act(slots, [envs[s] for s in slots],
                                             [obs[s] for s in slots]), dtype=float)
            if commands.shape != (len(slots), 12):
                raise ValueError(f"policy returned shape {commands.shape}, expected "
                                 f"({len(slots)}, 12)")
        except Exception as e:
            for s in slots:
                _fail(results[s], e, obs, s)
            break
        for s, command in zip(slots, commands):
            r = results[s]
            if s in views:
                frames[s].append(_frame(envs[s], views[s], obs[s], command, "running"))
            try:
                obs[s], success, done, info = envs[s].step(command)
            except Exception as e:
                _fail(r, e, obs, s)
                continue
            r.steps, r.success = info["step"], bool(success)
            r.failure, r.timeout = info["failure"], bool(info["timeout"])
            r.end_distance = envs[s].goal_distance()
            if done:
                if s in views:  # the end state, with the outcome
                    frames[s].append(_frame(envs[s], views[s], obs[s], command, r.outcome))
                del obs[s]
    for s, view in views.items():
        view.close()
        if frames[s]:
            write_video(Path(video_dir) / f"{task}_{results[s].index:03d}.mp4", frames[s])
    return results


def _frame(env: Go2TaskEnv, view: TopDownView, obs: Observation, command: np.ndarray,
           outcome: str) -> np.ndarray:
    return rollout_frame(obs.image, view.render(env.physics.data),
                         Caption(env.instruction.text, obs.step, command, outcome),
                         env.action_space)


def _fail(result: EpisodeResult, error: Exception, obs: dict, slot: int) -> None:
    result.success = False
    result.error = f"{type(error).__name__}: {error}"
    result.failure = result.failure or "error"
    obs.pop(slot, None)
    if not isinstance(error, ValueError):  # an unexpected crash: keep the trace for debugging
        result.error += "\n" + "".join(traceback.format_exception(error)[-3:])
