"""Image-question-answer data: random scenes of all six tasks seen from random robot poses.

Frames are rendered once per split (a few ms each) and cached as one ``.npz`` next to the run;
training draws (frame, family, question) triples from a generator seeded by (seed, step), so a
resumed run sees exactly the samples an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from more_policy import vision
from more_policy.pretrain import questions as questions_module
from more_policy.pretrain.questions import FAMILIES, object_views, questions
from more_policy.sim import scenes, tasks
from more_policy.sim.env import make_env
from more_policy.sim.scenes import TASKS, SceneError
from more_policy.sim.tasks import TEMPLATES

# Robot poses: from behind the start to past the objects, facing roughly forward.
POSE_X, POSE_Y, POSE_YAW = (-1.0, 2.4), (-1.0, 1.0), (-0.7, 0.7)
SPLIT_SEED_OFFSETS = {"train": 0, "heldout": 1_000_003, "unseen": 2_000_003}


@dataclass(frozen=True)
class SplitSpec:
    """Which scenes a split renders: held-out splits use other scene seeds (and colours)."""

    name: str
    scenes_per_task: int
    poses_per_scene: int
    colors: str = "seen"
    phrasing: str = "train"


@dataclass
class QASplit:
    """Frames and, per frame, its (family, question, answer) triples."""

    images: np.ndarray  # (N, H, W, 3) uint8
    qa: list[list[tuple[str, str, str]]]
    tasks: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, images=self.images, meta=np.array(json.dumps(
            {"qa": self.qa, "tasks": self.tasks})))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> QASplit:
        with np.load(path) as f:
            meta = json.loads(str(f["meta"]))
            return cls(f["images"], [[tuple(t) for t in q] for q in meta["qa"]], meta["tasks"])

    def by_family(self) -> dict[str, list[tuple[int, int]]]:
        """family -> every (frame, question index) of that family."""
        index: dict[str, list[tuple[int, int]]] = {f: [] for f in FAMILIES}
        for i, triples in enumerate(self.qa):
            for j, (family, _, _) in enumerate(triples):
                index[family].append((i, j))
        return index

    def sample(self, rng: np.random.Generator, index: dict[str, list[tuple[int, int]]],
               weights: dict[str, float]) -> tuple[int, str, str, str]:
        """A family by ``weights`` (the rare letter frames would starve otherwise), then one
        of its questions uniformly: (frame, family, question, answer)."""
        families = [f for f in FAMILIES if index[f] and weights.get(f, 0) > 0]
        p = np.array([weights[f] for f in families], dtype=float)
        family = families[rng.choice(len(families), p=p / p.sum())]
        i, j = index[family][rng.integers(len(index[family]))]
        _, question, answer = self.qa[i][j]
        return i, family, question, answer


def render_split(spec: SplitSpec, seed: int, image_size: int,
                 progress: bool = True) -> QASplit:
    """Render ``spec`` (all six tasks) from scene seeds derived from ``seed`` and the split."""
    images, qa, task_of = [], [], []
    base = seed * 10_000_019 + SPLIT_SEED_OFFSETS[spec.name]
    bar = tqdm(total=len(TASKS) * spec.scenes_per_task, desc=f"render {spec.name}",
               disable=not progress)
    for t, task in enumerate(TASKS):
        env = make_env(task, seed=seed, image_size=(image_size, image_size), colors=spec.colors,
                       phrasing=spec.phrasing, render=False)
        for k in range(spec.scenes_per_task):
            scene_seed = base + t * 100_003 + k
            rng = np.random.default_rng(scene_seed)
            try:
                env.reset(seed=scene_seed)
            except SceneError:  # a layout that starts in contact: skip it
                bar.update(1)
                continue
            placed = 0
            for _ in range(20 * spec.poses_per_scene):
                if placed == spec.poses_per_scene:
                    break
                xy = (rng.uniform(*POSE_X), rng.uniform(*POSE_Y))
                if env.place_robot(xy, rng.uniform(*POSE_YAW)) is not None:
                    continue
                model, data = env.physics.model, env.physics.data
                views = object_views(env.scene, model, data)
                goal = next((v for v in views if v.name == env.scene.target), None)
                images.append(env.render())
                qa.append(questions(views, goal, env.instruction.text))
                task_of.append(task)
                placed += 1
            bar.update(1)
        env.close()
    bar.close()
    return QASplit(np.stack(images), qa, task_of)


def load_or_render(cache: Path, spec: SplitSpec, seed: int, image_size: int,
                   progress: bool = True) -> QASplit:
    """The cached split if it was rendered with the same spec, seed and size; else render it."""
    key = json.dumps({"spec": asdict(spec), "seed": seed, "image_size": image_size,
                      "code": generator_hash()})
    marker = cache.with_suffix(".json")
    if cache.exists() and marker.exists() and marker.read_text() == key:
        return QASplit.load(cache)
    split = render_split(spec, seed, image_size, progress)
    split.save(cache)
    marker.write_text(key)
    return split


def generator_hash() -> str:
    """Digest of the code that decides what a split contains (a stale cache must not survive a
    change of scenes, camera or questions)."""
    digest = hashlib.sha1()
    for module in (questions_module, scenes, tasks, vision):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def instruction_corpus() -> list[str]:
    """Instruction phrasings (both splits) for the tokenizer: the goal family quotes them."""
    return [template.replace("{", "").replace("}", "") for task in TEMPLATES.values()
            for phrasings in task.values() for template in phrasings]
