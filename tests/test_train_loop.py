"""The accelerate trainer with the tiny MoRE model: end to end, kill-and-resume, 2-process DDP."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_data_quard import write_episode

from more_policy.data import EpisodeDataset
from more_policy.data.quard import convert_quard
from more_policy.rl import RLConfig
from more_policy.training import TrainConfig, lr_at, time_train_steps, train
from more_policy.training.cli import add_arguments, config_from_args

CPU_DDP_CONFIG = Path(__file__).parents[1] / "configs" / "accelerate" / "cpu_ddp_2proc.yaml"
MODEL = {"backbone": "tiny", "num_experts": 4, "lora_rank": 4, "attn_lora_rank": 4,
         "lora_dropout": 0.1}  # dropout on: resume must restore the RNG too


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    for e in range(4):
        write_episode(root / "quard" / ("go_to" if e % 2 else "crawl") / f"{e:06d}", 61,
                      vx=0.3 * e, seed=e)
    return convert_quard(root / "quard", root / "data", image_size=(32, 32), progress=False)


def config(data, out, **kw):
    return TrainConfig(data=str(data), out_dir=str(out), model=dict(MODEL), batch_size=4,
                       lr=3e-3, warmup_ratio=0.1, log_every=1, **kw)


def losses(run: Path, name="loss") -> list[float]:
    with open(run / "metrics.csv") as f:
        return [float(v) for _, n, v in csv.reader(f) if n == name]


def final_state(run: Path, step: int) -> dict:
    return torch.load(run / "checkpoints" / f"step_{step:07d}" / "trainer_state.pt",
                      weights_only=False)


def test_tiny_model_trains_end_to_end_from_a_converted_dataset(dataset, tmp_path):
    hook_steps = []
    run = train(config(dataset, tmp_path / "run", max_steps=16, save_every=16, eval_every=8,
                       eval_data=str(dataset), eval_batches=2),
                eval_hook=lambda step, model: hook_steps.append(step) or {"eval/custom": 1.0})
    assert hook_steps == [8, 16]
    curve = losses(run)
    assert len(curve) == 16
    assert len(losses(run, "eval/loss")) == 2 and losses(run, "eval/custom") == [1.0, 1.0]
    assert sum(curve[-4:]) / 4 < 0.7 * sum(curve[:4]) / 4, curve
    with open(run / "metrics.csv") as f:
        names = {n for _, n, _ in csv.reader(f)}
    assert {"td_loss", "conservative_loss", "vocab_loss", "balance_loss", "q_taken",
            "expert_load_max/layer0", "lr", "grad_norm"} <= names
    from more_policy.model import MoREPolicy

    loaded = MoREPolicy.from_pretrained(run / "final")
    trained = final_state(run, 16)["trainable"]
    for name, value in loaded.trainable_state_dict().items():
        assert torch.equal(value, trained["policy.model." + name]), name
    assert loaded.action_space.to_dict() == EpisodeDataset(dataset).action_space.to_dict()
    assert RLConfig.load(run) == RLConfig()
    assert (run / "checkpoints" / "step_0000016" / "policy").is_dir()


def test_frame_feature_cache_trains_the_same_run(dataset, tmp_path):
    """frame_cache_frames: the dataset's frames stay JPEG until the cache projects them; the
    run's losses equal those of a run that decodes every draw."""
    plain = train(config(dataset, tmp_path / "plain", max_steps=6, save_every=100))
    cached = train(config(dataset, tmp_path / "cached", max_steps=6, save_every=100,
                          frame_cache_frames=10_000))
    assert losses(cached) == pytest.approx(losses(plain), rel=1e-5, abs=1e-7)


def test_binary_terminate_reaches_the_loss_through_the_model_stop_bins(dataset, tmp_path):
    run = train(config(dataset, tmp_path / "run", max_steps=3, save_every=100,
                       rl=RLConfig(binary_terminate=True)))
    decision = losses(run, "decision_loss")
    assert len(decision) == 3 and all(v > 0 for v in decision)
    assert RLConfig.load(run).binary_terminate


def test_periodic_target_mode_trains_on_the_datasets_next_steps(dataset, tmp_path):
    """rl.target_mode 'periodic' reads s' values from the teacher-forced pass of the next step
    (the dataset's (episode, step) ids and next_action_bins): its first update, where both
    modes' targets come from the initial weights, has the EMA run's loss."""
    ema = losses(train(config(dataset, tmp_path / "ema", max_steps=3, save_every=100)))
    periodic = losses(train(config(dataset, tmp_path / "periodic", max_steps=3, save_every=100,
                                   rl=RLConfig(target_mode="periodic",
                                               target_refresh_every=2))))
    assert len(periodic) == 3 and all(torch.isfinite(torch.tensor(periodic)))
    assert periodic[0] == pytest.approx(ema[0], rel=1e-5)


def test_time_budget_stops_early_with_a_checkpoint_and_final(dataset, tmp_path):
    run = train(config(dataset, tmp_path / "run", max_steps=100_000, save_every=100_000,
                       max_seconds=1.0))
    steps = len(losses(run))
    assert 0 < steps < 100_000  # stopped by the budget, not the step count
    step_dirs = sorted((run / "checkpoints").glob("step_*"))
    assert [d.name for d in step_dirs] == [f"step_{steps:07d}"]  # saved where it stopped
    from more_policy.model import MoREPolicy

    MoREPolicy.from_pretrained(run / "final")


def test_step_timing_runs_real_steps_and_writes_nothing(dataset, tmp_path):
    times = time_train_steps(config(dataset, tmp_path / "run", max_steps=10), steps=2)
    assert len(times) == 2 and all(t > 0 for t in times)
    assert not (tmp_path / "run").exists()


def test_killed_run_resumes_exactly(dataset, tmp_path):
    steps = 7
    reference = train(config(dataset, tmp_path / "ref", max_steps=steps, save_every=2))
    killed = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import os, signal
        from more_policy.training import TrainConfig, train
        cfg = TrainConfig(data={str(dataset)!r}, out_dir={str(killed)!r}, model={MODEL!r},
                          batch_size=4, lr=3e-3, warmup_ratio=0.1, log_every=1,
                          max_steps={steps}, save_every=2, eval_every=5)
        train(cfg, eval_hook=lambda step, model: os.kill(os.getpid(), signal.SIGKILL))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert sorted(p.name for p in (killed / "checkpoints").iterdir())[-1] == "step_0000004"
    train(config(dataset, killed, max_steps=steps, save_every=2))  # resume="auto"
    a, b = final_state(reference, steps), final_state(killed, steps)
    assert a["trainable"].keys() == b["trainable"].keys()
    for name in a["trainable"]:
        assert torch.equal(a["trainable"][name], b["trainable"][name]), name
    for name, t in a["objective"]["target"]["params"].items():
        assert torch.equal(t, b["objective"]["target"]["params"][name]), name
    assert losses(reference)[-2:] == losses(killed)[-2:]


def test_warmup_cosine_schedule_and_cli_overrides(tmp_path):
    cfg = TrainConfig(max_steps=100, warmup_ratio=0.1, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(55, cfg) == pytest.approx(0.55, abs=0.02) and lr_at(100, cfg) == 0.1
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    (tmp_path / "c.yaml").write_text("batch_size: 3\nrl: {alpha: 0.2}\n")
    cfg = config_from_args(p.parse_args(["--config", str(tmp_path / "c.yaml"), "--data", "d",
                                         "--objective", "il", "--set", "model.num_experts=2",
                                         "--set", "rl.beta=0.02"]))
    assert (cfg.batch_size, cfg.data, cfg.rl.objective, cfg.rl.alpha, cfg.rl.beta) == \
        (3, "d", "il", 0.2, 0.02)
    assert cfg.model.num_experts == 2


@pytest.mark.parametrize("override, message", [
    ("model.num_experts.x=2", "'model.num_experts' is not a section"),  # was silently dropped
    ("optim.lr=0.1", "'optim' does not exist"),
    ("model.num_expert=2", "unknown MoREConfig fields"),
    ("rl.alfa=0.1", "unknown rl options"),
    ("batchsize=3", "unknown training options"),
    ("lr", "KEY=VALUE"),
])
def test_overrides_that_cannot_apply_are_rejected_by_name(override, message):
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    with pytest.raises(ValueError, match=message):
        config_from_args(p.parse_args(["--set", override]))


def test_config_sections_are_typed_and_checked_before_any_work(tmp_path):
    from more_policy.model import MoREConfig, MoREConfigError

    cfg = TrainConfig(model={"backbone": "tiny", "num_experts": 2}, rl={"alpha": 0.1})
    assert isinstance(cfg.model, MoREConfig) and cfg.model.num_experts == 2
    assert cfg.rl == RLConfig(alpha=0.1)
    (tmp_path / "c.json").write_text('{"model": {"top_k": 9}}')
    with pytest.raises(MoREConfigError, match="top_k"):
        TrainConfig.load(tmp_path / "c.json")
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainConfig(mixed_precision="fp8")
    saved = TrainConfig(data="d", model={"lora_rank": 4}).save(tmp_path)
    assert TrainConfig.load(saved) == TrainConfig(data="d", model={"lora_rank": 4})


@pytest.mark.slow
def test_two_processes_keep_identical_replicas(dataset, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import torch, torch.distributed as dist
        from more_policy.training import TrainConfig, train

        def record(step, model):
            assert dist.get_world_size() == 2 and dist.get_backend() == "gloo"
            rank = dist.get_rank()
            torch.save({{n: p.detach() for n, p in model.named_parameters() if p.requires_grad}},
                       {str(tmp_path)!r} + f"/rank{{rank}}_step{{step}}.pt")

        cfg = TrainConfig(data={str(dataset)!r}, out_dir={str(tmp_path / 'run')!r},
                          model={MODEL!r}, batch_size=2, lr=3e-3, log_every=1, max_steps=4,
                          save_every=4, eval_every=2)
        train(cfg, eval_hook=record)
    """))
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The documented 2-process CPU config, exactly as a user launches it (port made free).
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                           str(CPU_DDP_CONFIG), "--main_process_port", str(port), str(script)],
                          capture_output=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    for step in (2, 4):
        r0 = torch.load(tmp_path / f"rank0_step{step}.pt")
        r1 = torch.load(tmp_path / f"rank1_step{step}.pt")
        initial = final_state(tmp_path / "run", 4)["trainable"] if step == 4 else None
        for name in r0:
            assert torch.equal(r0[name], r1[name]), name
            if initial is not None:
                assert torch.equal(r0[name], initial[name])
    assert len(losses(tmp_path / "run")) == 4
