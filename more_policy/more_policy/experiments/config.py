"""Experiment configs: what data, model, objective, budget and evaluation one run uses."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from more_policy.model.config import MoREConfig
from more_policy.training.config import TrainConfig, section_from_dict

# QUARD-Auto's four tasks: the only ones with sub-optimal (failed) trajectories in the paper.
SUBOPTIMAL_TASKS = ("distinguish", "go_to", "go_through", "go_avoid")
OBJECTIVES = ("q", "il")
# TrainConfig fields every experiment sets from its own fields and plan (see train_config).
EXPERIMENT_TRAIN_FIELDS = ("data", "out_dir", "model", "max_steps", "seed", "save_every")
CHECKPOINTS_PER_RUN = 10


def train_options(**options: Any) -> TrainConfig:
    """An experiment's TrainConfig: one checkpoint kept (runs are short and many)."""
    return TrainConfig.from_dict({"keep_checkpoints": 1, **options})


@dataclass
class DataConfig:
    """The mixed-quality sim dataset (expert for all six tasks + failed sub-optimal runs)."""

    image_size: int = 96             # square camera frames stored in the dataset
    expert_episodes: int = 30        # per task, all six tasks
    failed_episodes: int = 30        # failed sub-optimal episodes per SUBOPTIMAL_TASKS task
    max_attempts_per_failure: int = 4  # give up on a task after this many attempts per failure
    max_steps: int = 100             # episode limit at 5 Hz
    seed: int = 0                    # scene seeds of the data (the same for every ablation run)

    def __post_init__(self) -> None:
        if self.image_size < 16 or self.expert_episodes < 1 or self.failed_episodes < 0:
            raise ValueError(f"bad data config {self}: need image_size >= 16, "
                             f"expert_episodes >= 1, failed_episodes >= 0")


@dataclass
class ExperimentConfig:
    """One training + evaluation run. ``train`` is the TrainConfig less the fields the
    experiment sets itself (EXPERIMENT_TRAIN_FIELDS, and rl.objective from ``objective``)."""

    name: str = "more-small"
    seed: int = 0                    # model init, data order, dropout
    data: DataConfig = field(default_factory=DataConfig)
    use_suboptimal: bool = True      # train on expert + failed sub-optimal data (MoRE)
    objective: str = "q"             # q: offline RL (MoRE); il: imitation (w/o RL)
    model: MoREConfig = field(default_factory=MoREConfig)
    train: TrainConfig = field(default_factory=train_options)
    max_train_steps: int = 0         # > 0: exactly this many; 0: as many as train_budget_s allows
    train_budget_s: float = 600.0    # wall-clock training budget when max_train_steps == 0
    min_train_steps: int = 10
    eval_episodes: int = 20          # per task
    eval_tasks: str = "all"          # 'all' or comma-separated task names
    eval_max_steps: int = 0          # episode limit in evaluation; 0: data.max_steps
    eval_seed: int = 10_000          # scenes disjoint from the training data's
    eval_batch_size: int = 8

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = section_from_dict(DataConfig, self.data, "data")
        if isinstance(self.model, dict):
            self.model = MoREConfig.from_dict(self.model)
        if isinstance(self.train, dict):
            self.train = train_options(**self.train)
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        # One source for the objective: the experiment's (ablation variants change it).
        self.train = replace(self.train, rl=replace(self.train.rl, objective=self.objective))
        if self.eval_episodes < 1:
            raise ValueError(f"eval_episodes must be >= 1, got {self.eval_episodes}")
        if self.max_train_steps < 0 or (self.max_train_steps == 0 and self.train_budget_s <= 0):
            raise ValueError("set max_train_steps > 0 or a positive train_budget_s")

    def with_overrides(self, **changes: Any) -> ExperimentConfig:
        return replace(self, **changes)

    def train_config(self, data_dir: str | Path, run_dir: str | Path, steps: int) -> TrainConfig:
        """The trainer's config for this experiment's ``steps``-step run."""
        return replace(self.train, data=str(data_dir), out_dir=str(run_dir), model=self.model,
                       max_steps=steps, seed=self.seed,
                       save_every=max(1, steps // CHECKPOINTS_PER_RUN))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in EXPERIMENT_TRAIN_FIELDS:
            del data["train"][name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown experiment options {unknown}")
        train = data.get("train", {})
        owned = sorted(set(train) & set(EXPERIMENT_TRAIN_FIELDS))
        if owned:
            raise ValueError(f"train options {owned} are set by the experiment itself; use its "
                             f"own fields (seed, model, max_train_steps / train_budget_s)")
        objective = data.get("objective", cls.objective)
        if train.get("rl", {}).get("objective", objective) != objective:
            raise ValueError(f"train.rl.objective {train['rl']['objective']!r} contradicts "
                             f"objective {objective!r}; set only objective")
        return cls(**data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ExperimentConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
