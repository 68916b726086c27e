"""The CNN behaviour-cloning baseline: save/load/act round trip, training, CLI, eval hook."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from more_policy.actions import TERMINATE_INDEX, ActionSpace
from more_policy.baselines.cnn import (
    CONFIG_FILE,
    UNKNOWN_WORD,
    CNNConfig,
    CNNPolicy,
    build_vocab,
    is_cnn_checkpoint,
    words,
)
from more_policy.baselines.cnn_train import CNNTrainConfig, CNNTrainer, load_frames
from more_policy.cli import build_parser, main
from more_policy.data import EpisodeWriter

SMALL = dict(image_size=32, channels=(16, 16), word_dim=16, hidden_dim=32, dropout=0.0)
SPACE = ActionSpace()


def _frames(rng, n, size=48):
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture
def steering_data(tmp_path):
    """Episodes whose yaw rate follows a red square's side (left: +, right: -) and whose
    forward speed follows the instruction's speed word; terminate when a green bar shows."""
    rng = np.random.default_rng(0)
    root = tmp_path / "steer"
    with EpisodeWriter(root, SPACE, rows_per_row_group=64) as writer:
        for e in range(24):
            side, word = (-1, 1)[e % 2], ("slowly", "quickly")[e // 2 % 2]
            frames = np.full((8, 48, 48, 3), 90, dtype=np.uint8)
            commands = np.stack([SPACE.default_command() for _ in range(8)])
            for t in range(8):
                x = int(rng.integers(2, 16)) + (0 if side > 0 else 30)
                frames[t, 20:36, x:x + 14] = (220, 20, 20)
                commands[t, 2] = 0.6 * side
                commands[t, 0] = 0.5 if word == "slowly" else 1.5
            frames[-1, 40:, :] = (20, 200, 20)
            commands[-1, TERMINATE_INDEX] = 1.0
            writer.add_episode(frames, commands, f"go {word} to the red box", "go_to")
        writer.add_episode(_frames(rng, 3), np.zeros((3, 12)), "ignored", "go_to",
                           success=False)
    return root


def test_words_and_vocab():
    assert words("Go to the RED ball, quickly!") == ["go", "to", "the", "red", "ball", "quickly"]
    vocab = build_vocab(["go to the red ball", "go to the blue box"])
    assert vocab[0] == UNKNOWN_WORD and vocab[1:] == tuple(sorted(set(vocab[1:])))
    with pytest.raises(ValueError, match="unk"):
        CNNConfig(vocab=("go",))
    with pytest.raises(ValueError, match="divisible"):
        CNNConfig(image_size=30, channels=(8, 8))


def test_save_load_act_round_trip(tmp_path):
    torch.manual_seed(0)
    config = CNNConfig(**SMALL, vocab=build_vocab(["go to the red ball", "crawl under"]))
    model = CNNPolicy(config)
    rng = np.random.default_rng(1)
    images = list(_frames(rng, 3, 40)) + [_frames(rng, 1, 32)[0]]  # resized / already sized
    texts = ["go to the red ball", "crawl under the bar", "unknown words only", ""]
    before = model.act(images, texts)
    assert before.values.shape == (4, 12) and before.bins.shape == (4, 12)
    assert np.all(before.values >= SPACE.low) and np.all(before.values <= SPACE.high)
    assert set(np.unique(before.values[:, TERMINATE_INDEX])) <= {0.0, 1.0}
    assert np.array_equal(before.bins, SPACE.encode(before.values))
    np.testing.assert_allclose(model.act(images[:1], texts[:1]).values, before.values[:1],
                               atol=1e-5)  # a frame's command does not depend on its batch

    model.save_pretrained(tmp_path / "ckpt", extra={"note": "run metadata"})
    assert is_cnn_checkpoint(tmp_path / "ckpt") and not is_cnn_checkpoint(tmp_path)
    assert json.loads((tmp_path / "ckpt" / CONFIG_FILE).read_text())["training"]["note"]
    loaded = CNNPolicy.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == config and not loaded.training
    after = loaded.act(images, texts)
    np.testing.assert_array_equal(after.values, before.values)
    np.testing.assert_allclose(after.terminate_prob, before.terminate_prob)


def test_bad_inputs_raise_clear_errors(tmp_path):
    model = CNNPolicy(CNNConfig(**SMALL))
    frame = np.zeros((32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="2 images but 1 instructions"):
        model.act([frame, frame], ["go"])
    with pytest.raises(ValueError, match="uint8 RGB frame"):
        model.act([frame.astype(np.float32)], ["go"])
    with pytest.raises(ValueError, match="strings"):
        model.act([frame], [None])
    with pytest.raises(FileNotFoundError, match=CONFIG_FILE):
        CNNPolicy.from_pretrained(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"kind": "something_else"}))
    with pytest.raises(ValueError, match="not a CNN baseline"):
        CNNPolicy.from_pretrained(tmp_path)


def test_training_learns_the_image_and_instruction_dependence(steering_data, tmp_path):
    frames = load_frames([steering_data], 32, progress=False)
    assert len(frames.instructions) == 24 * 8  # the failed episode is left out
    cfg = CNNTrainConfig(data=(str(steering_data),), out=str(tmp_path / "run"), steps=150,
                         batch_size=16, lr=3e-3, warmup_steps=10, val_episodes=4,
                         save_every=1000, model=CNNConfig(**SMALL))
    trainer = CNNTrainer(cfg, frames=frames, progress=False)
    assert "quickly" in trainer.model.config.vocab
    start = trainer.validation_loss()
    model = trainer.train()
    end = trainer.history[-1]
    for part in ("val_regression", "val_terminate"):
        assert end[part] < 0.3 * start[part], (part, start, end)
    # held-out frames: steer towards the square, walk at the instruction's speed
    for i in trainer.val_index[:6]:
        image = frames.images[i].numpy().transpose(1, 2, 0)
        act = model.act([image], [frames.instructions[i]]).values[0]
        target = frames.commands[i].numpy()
        assert np.sign(act[2]) == np.sign(target[2])
        assert abs(act[0] - target[0]) < 0.4
        assert act[TERMINATE_INDEX] == target[TERMINATE_INDEX]


def test_resume_continues_the_same_run(steering_data, tmp_path):
    frames = load_frames([steering_data], 32, progress=False)

    def trainer(out):
        cfg = CNNTrainConfig(data=(str(steering_data),), out=str(out), steps=8, batch_size=8,
                             warmup_steps=2, save_every=100, model=CNNConfig(**SMALL))
        return CNNTrainer(cfg, frames=frames, progress=False)

    straight = trainer(tmp_path / "a").train()
    interrupted = trainer(tmp_path / "b")
    for _ in range(5):
        interrupted.train_step()
    interrupted.save()  # what a periodic save leaves behind when the run is killed
    resumed = trainer(tmp_path / "b")
    assert resumed.resume() and resumed.step == 5
    assert not trainer(tmp_path / "c").resume()  # nothing to resume: starts at step 0
    resumed = resumed.train()
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value)


@pytest.mark.slow  # `more` imports every subcommand's module
def test_cli_parses_and_trains(steering_data, tmp_path, capsys):
    args = build_parser().parse_args(["baseline", "train", "--data", "a", "b", "--out", "o",
                                      "--steps", "7", "--max-cpu-minutes", "2"])
    assert (args.data, args.steps, args.max_cpu_minutes, args.lr) == (["a", "b"], 7, 2.0, None)
    assert main(["baseline", "train", "--data", str(tmp_path / "missing"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err
    out = tmp_path / "cli_run"
    assert main(["baseline", "train", "--data", str(steering_data), "--out", str(out),
                 "--steps", "3", "--image-size", "32"]) == 0
    meta = json.loads((out / CONFIG_FILE).read_text())
    assert meta["image_size"] == 32 and meta["training"]["step"] == 3
    assert CNNPolicy.from_pretrained(out).config.image_size == 32


@pytest.mark.sim
def test_eval_loads_a_cnn_directory(tmp_path):
    from more_policy.sim.evaluate import evaluate, make_eval_policy

    CNNPolicy(CNNConfig(**SMALL, vocab=build_vocab(["go to the red ball"]))).save_pretrained(
        tmp_path / "cnn")
    policy = make_eval_policy(str(tmp_path / "cnn"))
    assert isinstance(policy.model, CNNPolicy) and policy.name == "cnn"
    result = evaluate(policy, "go_to", episodes=1, max_steps=3, progress=False)
    assert result.episodes[0].error is None and result.episodes[0].steps >= 1


COMMITTED = Path(__file__).resolve().parents[1] / "artifacts" / "baselines" / "cnn"
RESULTS = COMMITTED.parents[1] / "results" / "benchmark" / "cnn" / "results.json"


@pytest.mark.sim
def test_committed_checkpoint_loads_acts_and_matches_its_claims():
    from more_policy.sim.env import make_env

    size_mb = sum(p.stat().st_size for p in COMMITTED.iterdir()) / 2**20
    assert size_mb < 5
    meta = json.loads((COMMITTED / CONFIG_FILE).read_text())["training"]
    assert meta["cpu_minutes"] <= 30  # the training budget: one core, 30 min
    results = json.loads(RESULTS.read_text())
    assert results["seed"] == 10_000 and results["episodes_per_task"] >= 16
    assert results["average"] == pytest.approx(np.mean(list(results["success_rate"].values())))
    model = CNNPolicy.from_pretrained(COMMITTED)
    env = make_env("go_to", seed=10_000)
    try:
        obs = env.reset()
        act = model.act([obs.image], [obs.instruction])
    finally:
        env.close()
    assert act.values.shape == (1, 12) and np.isfinite(act.values).all()
    assert act.values[0, 0] > 0.1 and act.values[0, TERMINATE_INDEX] == 0  # walks off, no stop
