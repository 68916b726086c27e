"""The pretrained backbone's gates: held-out VQA accuracy and a frozen-feature linear probe.

VQA: exact-match accuracy per question family on held-out scenes (other seeds, held-out
instruction phrasings) and, reported separately, on scenes in colours never seen in training.
Probe: MoRE is built from the backbone directory (the checkpoint path Fuyu-8B takes) and the
frozen hidden state at the begin-answer position (the one MoRE's action head reads) is ridge-
regressed on the goal's image column and the scripted expert's yaw-rate command; Pearson r on
frames of held-out expert episodes. The random 'tiny' backbone is measured the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from more_policy.model import MoREConfig, MoREPolicy
from more_policy.model.fuyu import FuyuBackbone
from more_policy.pretrain.data import QASplit, SplitSpec, generator_hash, load_or_render
from more_policy.pretrain.model import QAEncoder, answer_logits, exact_match
from more_policy.pretrain.questions import FAMILIES, object_views
from more_policy.sim.env import make_env
from more_policy.sim.expert import ScriptedExpert
from more_policy.sim.scenes import TASKS, SceneError

GOALS = {"vqa": {"colour": 0.90, "letter": 0.90, "side": 0.90}, "probe_r": 0.80}
PROBE_TRAIN_SEED, PROBE_TEST_SEED = 500_000, 600_000  # disjoint expert episode seeds
RIDGE_ALPHAS = np.logspace(-2, 4, 7)


@torch.no_grad()
def vqa_accuracy(model, tokenizer, split: QASplit, image_size: int, per_family: int = 300,
                 batch_size: int = 32) -> dict[str, dict[str, float]]:
    """family -> {accuracy, n}: up to ``per_family`` questions each (a fixed seeded choice)."""
    encoder = QAEncoder(model, tokenizer, image_size)
    rng = np.random.default_rng(0)
    report = {}
    for family, items in split.by_family().items():
        if not items:
            continue
        chosen = [items[k] for k in sorted(rng.permutation(len(items))[:per_family])]
        correct = 0
        for s in range(0, len(chosen), batch_size):
            triples = [split.qa[i][j] for i, j in chosen[s:s + batch_size]]
            batch = encoder(split.images[[i for i, _ in chosen[s:s + batch_size]]],
                            [t[1] for t in triples], [t[2] for t in triples])
            correct += int(exact_match(answer_logits(model, batch), batch["labels"]).sum())
        report[family] = {"accuracy": round(correct / len(chosen), 4), "n": len(chosen)}
    return report


def expert_frames(seed: int, episodes_per_task: int, image_size: int, stride: int = 2,
                  max_steps: int = 100) -> dict[str, np.ndarray | list]:
    """Frames of scripted-expert episodes with the instruction, the expert's yaw-rate command
    and the goal object's image column (NaN when out of view)."""
    images, texts, yaw, goal_x, episode = [], [], [], [], []
    for t, task in enumerate(TASKS):
        env = make_env(task, seed=seed, image_size=(image_size, image_size), max_steps=max_steps)
        for k in range(episodes_per_task):
            try:
                obs = env.reset(seed=seed + 1000 * t + k)
            except SceneError:
                continue
            expert = ScriptedExpert(env.action_space)
            expert.reset(env.scene, env.instruction, env.base_pose())
            done, step = False, 0
            while not done:
                command = expert.act(env.base_pose())
                if step % stride == 0:
                    views = object_views(env.scene, env.physics.model, env.physics.data)
                    goal = next(v for v in views if v.name == env.scene.target)
                    images.append(obs.image)
                    texts.append(env.instruction.text)
                    yaw.append(float(command[2]))
                    goal_x.append(goal.x if goal.visible else np.nan)
                    episode.append(t * 1000 + k)
                obs, _, done, _ = env.step(command)
                step += 1
        env.close()
    return {"images": np.stack(images), "instructions": texts, "yaw": np.array(yaw),
            "goal_x": np.array(goal_x), "episode": np.array(episode)}


def cached_expert_frames(path: Path, seed: int, episodes_per_task: int,
                         image_size: int) -> dict:
    """:func:`expert_frames`, kept next to the run's data (keyed by its arguments)."""
    key = json.dumps([seed, episodes_per_task, image_size, generator_hash()])
    if path.exists():
        with np.load(path) as f:
            if str(f["key"]) == key:
                return {"images": f["images"], "instructions": [str(t) for t in f["instructions"]],
                        "yaw": f["yaw"], "goal_x": f["goal_x"], "episode": f["episode"]}
    frames = expert_frames(seed, episodes_per_task, image_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, key=np.array(key), **{k: np.asarray(v) for k, v in frames.items()})
    return frames


@torch.no_grad()
def begin_answer_features(policy: MoREPolicy, images: np.ndarray, instructions: list[str],
                          batch_size: int = 32) -> np.ndarray:
    """(N, hidden) last-layer state at the begin-answer token of MoRE's prompt (adapters
    start as identities, so this is the frozen backbone's)."""
    feats = []
    for s in range(0, len(images), batch_size):
        inputs = policy.prepare(images[s:s + batch_size], instructions[s:s + batch_size])
        out = policy.backbone_adapter.forward(
            policy.model, inputs["input_ids"], inputs["pixel_values"], inputs["attention_mask"],
            inputs["position_ids"], logits_to_keep=1, output_hidden_states=True)
        feats.append(out.hidden_states[-1][:, -1].float().numpy())
    return np.concatenate(feats)


def ridge_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                y_test: np.ndarray) -> dict[str, float]:
    """Standardised ridge regression; alpha picked on the last third of the training rows."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xtr, xte = (x_train - mean) / std, (x_test - mean) / std

    def fit(x, y, alpha):
        xb = np.hstack([x, np.ones((len(x), 1))])
        reg = alpha * np.eye(xb.shape[1])
        reg[-1, -1] = 0.0
        return np.linalg.solve(xb.T @ xb + reg, xb.T @ y)

    def predict(w, x):
        return np.hstack([x, np.ones((len(x), 1))]) @ w

    cut = 2 * len(xtr) // 3
    scores = [_pearson(predict(fit(xtr[:cut], y_train[:cut], a), xtr[cut:]), y_train[cut:])
              for a in RIDGE_ALPHAS]
    alpha = float(RIDGE_ALPHAS[int(np.nanargmax(scores))])
    w = fit(xtr, y_train, alpha)
    return {"r_train": round(_pearson(predict(w, xtr), y_train), 4),
            "r_heldout": round(_pearson(predict(w, xte), y_test), 4), "alpha": alpha,
            "n_train": len(xtr), "n_heldout": len(xte)}


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) < 1e-12 or np.std(b) < 1e-12:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def probe(backbone: str, image_size: int, train: dict, test: dict) -> dict[str, dict]:
    """Goal image column and expert yaw from the begin-answer state of ``backbone``."""
    policy = MoREPolicy.from_config(MoREConfig(backbone=backbone, image_size=image_size))
    f_train = begin_answer_features(policy, train["images"], train["instructions"])
    f_test = begin_answer_features(policy, test["images"], test["instructions"])
    seen_tr, seen_te = ~np.isnan(train["goal_x"]), ~np.isnan(test["goal_x"])
    return {"goal_x": ridge_probe(f_train[seen_tr], train["goal_x"][seen_tr], f_test[seen_te],
                                  test["goal_x"][seen_te]),
            "expert_yaw": ridge_probe(f_train, train["yaw"], f_test, test["yaw"])}


def measure_gates(backbone_dir: Path, write: bool = False, probe_episodes: tuple[int, int] = (
        8, 5)) -> dict:
    """All gates of a backbone directory written by ``more pretrain``."""
    cfg = json.loads((backbone_dir / "pretrain_config.json").read_text())
    size, seed = cfg["shape"]["image_size"], cfg["seed"]
    cache = Path(cfg["out_dir"]) / "data"
    model, tokenizer = FuyuBackbone().load(str(backbone_dir), "float32")
    vqa = {}
    for key in ("heldout_split", "unseen_split"):
        spec = SplitSpec(**cfg[key])
        split = load_or_render(cache / f"{spec.name}.npz", spec, seed, size, progress=False)
        vqa[spec.name] = vqa_accuracy(model, tokenizer, split, size)
    train = cached_expert_frames(cache / "probe_train.npz", PROBE_TRAIN_SEED + seed,
                                 probe_episodes[0], size)
    test = cached_expert_frames(cache / "probe_test.npz", PROBE_TEST_SEED + seed,
                                probe_episodes[1], size)
    probes = {"pretrained": probe(str(backbone_dir), size, train, test),
              "random_tiny": probe("tiny", size, train, test)}
    held = vqa["heldout"]
    passed = {f"vqa_{f}": held.get(f, {}).get("accuracy", 0.0) >= goal
              for f, goal in GOALS["vqa"].items()}
    passed.update({f"probe_{k}": v["r_heldout"] >= GOALS["probe_r"]
                   for k, v in probes["pretrained"].items()})
    gates = {"backbone": cfg["name"], "image_size": size, "goals": GOALS, "vqa": vqa,
             "probe": probes, "passed": passed,
             "families": [f for f in FAMILIES if f in held]}
    if write:
        (backbone_dir / "gates.json").write_text(json.dumps(gates, indent=2) + "\n")
    return gates
