"""The target pass: same targets and loss as the original one-forward-over-[s; s'] pass, and the
periodic target mode's snapshot, reuse and refresh, on the tiny MoRE policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import perturbed_q_model

from more_policy.data.format import decode_jpeg, encode_jpeg
from more_policy.rl import Objective, RLConfig
from more_policy.rl.losses import bellman_targets, q_learning_loss
from more_policy.training.model import PolicyQModel

INSTRUCTIONS = ["go to the red ball", "crawl under the gate", "go through the tunnel",
                "distinguish letter a from the other boxes", "go to the blue cube", "stop"]
DONES = [0.0, 1.0, 0.0, 0.0, 1.0, 0.0]


@pytest.fixture(scope="module")
def model():
    return perturbed_q_model(lora_dropout=0.1)[0]


def make_batch(model, seed=0, n=6):  # n: the first n of INSTRUCTIONS
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2 * n)]
    return {"state": model.make_state(frames[:n], INSTRUCTIONS[:n]),
            "next_state": model.make_state(frames[n:], INSTRUCTIONS[:n]),
            "action_bins": torch.randint(0, 256, (n, 12), generator=torch.Generator()
                                         .manual_seed(seed)),
            "rewards": torch.tensor([0, 1, 0, 0, 0, 0.5])[:n], "dones": torch.tensor(DONES[:n]),
            "mc_returns": torch.tensor([0.3, 1.0, 0.0, 0.9, 0.0, 0.6])[:n],
            "transition_ids": torch.tensor([[seed, i] for i in range(n)])}


def episode_batch(model, seed=0, n=6):
    """n consecutive transitions of episodes that end where DONES says, numbered (episode, step)
    as a dataset numbers them: a live step's s' is the next step's s, with its action and
    instruction; a terminal step's s' is its own s. Episodes of other seeds do not overlap."""
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(n + 1)]
    bins = torch.randint(0, 256, (n + 1, 12), generator=torch.Generator().manual_seed(seed))
    ids, texts, episode, step = [], [], 100 * seed, 0
    for i in range(n + 1):
        ids.append((episode, step))
        texts.append(INSTRUCTIONS[episode % len(INSTRUCTIONS)])
        episode, step = (episode + 1, 0) if i < n and DONES[i] else (episode, step + 1)
    nxt = [i if DONES[i] else i + 1 for i in range(n)]
    batch = make_batch(model, seed, n)
    batch.update({"state": model.make_state(frames[:n], texts[:n]),
                  "next_state": model.make_state([frames[j] for j in nxt], texts[:n]),
                  "action_bins": bins[:n], "next_action_bins": bins[nxt],
                  "transition_ids": torch.tensor(ids[:n])})
    successor = {"state": model.make_state(frames[n:], texts[n:]), "action_bins": bins[n:],
                 "transition_ids": torch.tensor(ids[n:])}
    return batch, successor


def reference_targets(objective, model, batch):
    """The original target pass: one teacher-forced forward over [s; s'], action tokens and
    terminal rows included."""
    bins, b = batch["action_bins"], len(batch["dones"])
    # s and s' share their instructions, so their prefixes have the same padded length.
    both = {k: torch.cat([batch["state"][k], batch["next_state"][k]]) for k in batch["state"]}
    with objective.target.applied(model):
        logits = model(both, torch.cat([bins, bins])).action_logits
    return bellman_targets(logits[:b], logits[b:, 0], batch["rewards"], batch["dones"],
                           objective.cfg.gamma, batch["mc_returns"])


def test_targets_and_loss_equal_the_original_target_pass(model):
    objective = Objective(RLConfig(), model, model.action_token_slice)
    batch = make_batch(model)
    expected = reference_targets(objective, model, batch)
    got = objective.targets(model, batch)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert got[1, -1] == batch["rewards"][1]  # terminal: no bootstrap (the MC floor is 1.0)
    model.eval()  # the loss check compares deterministic forwards
    loss, _ = objective(model, model, batch)
    out = model(batch["state"], batch["action_bins"])
    ref, _ = q_learning_loss(out.action_logits, batch["action_bins"], expected,
                             alpha=0.5, vocab_logits=out.vocab_logits,
                             action_token_slice=model.action_token_slice)
    torch.testing.assert_close(loss, ref + 0.002 * out.balance_loss, atol=1e-6, rtol=1e-5)


def test_prepared_states_equal_preparing_in_every_forward(model):
    """A state is prepared once, its patches projected: the forwards over it, with and
    without actions, equal the policy's forwards over the raw images."""
    frames = [np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)
              for i in range(len(INSTRUCTIONS))]
    bins = torch.randint(0, 256, (len(INSTRUCTIONS), 12), generator=torch.Generator()
                         .manual_seed(3))
    state = model.make_state(frames, INSTRUCTIONS)
    assert "pixel_values" not in state and state["image_features"].shape[:2] == (6, 4)
    policy = model.policy
    model.eval()
    with torch.no_grad():
        for actions in (bins, None):
            got = model(state, actions)
            want = policy(policy.prepare(frames, INSTRUCTIONS, actions))
            torch.testing.assert_close(got.action_logits, want.action_logits, atol=1e-5,
                                       rtol=1e-5)
            torch.testing.assert_close(got.balance_loss, want.balance_loss)


def test_periodic_targets_come_from_a_frozen_snapshot_until_the_refresh(model):
    objective = Objective(RLConfig(target_mode="periodic", target_refresh_every=3), model,
                          model.action_token_slice)
    snapshot = {n: t.clone() for n, t in objective.target.params.items()}
    batch, successor = episode_batch(model)
    expected = reference_targets(objective, model, batch)
    forwards = []
    hook = model.register_forward_hook(lambda *_: forwards.append(1))
    try:
        first = objective.targets(model, batch)
        # One teacher-forced pass over the six states s; the s' of live steps are states of
        # the batch, except the last step's successor: one pass over it.
        assert len(forwards) == 2
        torch.testing.assert_close(first, expected, atol=1e-5, rtol=1e-5)
        params = dict(model.named_parameters())
        for _ in range(2):  # online weights move; the snapshot and the targets do not
            with torch.no_grad():
                params["policy.model.lm_head.dim_bias"].add_(0.5)
            objective.after_optimizer_step(model)
        torch.testing.assert_close(objective.target.params, snapshot, atol=0, rtol=0)
        assert torch.equal(objective.targets(model, batch), first) and len(forwards) == 2
        # The successor, drawn as s (a terminal step here), reuses its values from its pass
        # as s': no forward.
        later, _ = episode_batch(model, seed=0, n=1)
        later.update(successor, next_state=successor["state"],
                     next_action_bins=successor["action_bins"], dones=torch.ones(1))
        objective.targets(model, later)
        assert len(forwards) == 2
        other, _ = episode_batch(model, seed=1)  # unseen states are computed, then cached
        objective.targets(model, other)
        assert len(forwards) == 4
        objective.after_optimizer_step(model)  # the 3rd update: a new snapshot
        assert torch.equal(objective.target.params["policy.model.lm_head.dim_bias"],
                           params["policy.model.lm_head.dim_bias"])
        refreshed = objective.targets(model, batch)
        assert len(forwards) == 6 and not torch.allclose(refreshed, first)
        torch.testing.assert_close(refreshed, reference_targets(objective, model, batch),
                                   atol=1e-5, rtol=1e-5)
    finally:
        hook.remove()
    for key in ("transition_ids", "next_action_bins"):
        with pytest.raises(KeyError, match=key):
            objective.targets(model, {k: v for k, v in batch.items() if k != key})


def test_target_mode_validation():
    with pytest.raises(ValueError, match="target_mode"):
        RLConfig(target_mode="polyak")
    with pytest.raises(ValueError, match="target_refresh_every"):
        RLConfig(target_mode="periodic", target_refresh_every=0)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no CPU bf16 kernels")
def test_bf16_autocast_loss_and_gradients_track_float32(model):
    """The GPU mixed-precision path (accelerate's bf16 autocast), run on the CPU."""
    objective = Objective(RLConfig(), model, model.action_token_slice)
    batch = make_batch(model)
    model.eval()  # same forward twice, no dropout
    grads = {}
    for precision in ("fp32", "bf16"):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss, metrics = objective(model, model, batch)
        loss.backward()
        grads[precision] = (loss.item(), torch.cat([p.grad.flatten() for p in
                                                    model.parameters() if p.grad is not None]))
        assert torch.isfinite(grads[precision][1]).all()
    (loss32, g32), (loss16, g16) = grads["fp32"], grads["bf16"]
    assert loss16 == pytest.approx(loss32, rel=0.05)
    assert torch.nn.functional.cosine_similarity(g32, g16, dim=0) > 0.9


@pytest.mark.slow
def test_compiled_decoder_equals_eager_targets_loss_and_gradients():
    """TrainConfig.compile: the RL loss (target pass included) and its gradients of a compiled
    decoder equal the eager ones on a fixed batch, for two prompt lengths (dynamic shapes)."""
    model = perturbed_q_model()[0].train()
    policy = model.policy
    batches = [make_batch(model), make_batch(model, seed=1, n=3)]  # two prompt lengths
    assert batches[0]["state"]["input_ids"].shape[1] > batches[1]["state"]["input_ids"].shape[1]
    results = []
    for compiled in (False, True):
        if compiled:
            policy.compile_decoder()
        for batch in batches:
            objective = Objective(RLConfig(), model, model.action_token_slice)
            model.zero_grad(set_to_none=True)
            loss, _ = objective(model, model, batch)
            loss.backward()
            results.append((loss.item(), [p.grad.clone() for p in model.parameters()
                                          if p.grad is not None]))
    for (eager_loss, eager_grads), (loss, grads) in zip(results[:2], results[2:]):
        assert loss == pytest.approx(eager_loss, rel=1e-5, abs=1e-6)
        assert len(grads) == len(eager_grads)
        for g, e in zip(grads, eager_grads):
            torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4)


def test_frame_feature_cache_gives_the_same_states_from_jpeg_bytes(model):
    """TrainConfig.frame_cache_frames: states built from JPEG bytes through the cache equal
    those prepared from the decoded frames; a frame is computed once, up to max_frames."""
    rng = np.random.default_rng(5)
    jpegs = [encode_jpeg(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), 90)
             for _ in range(3)]
    cached = PolicyQModel(model.policy, frame_cache_frames=2)
    frames = [jpegs[0], jpegs[1], jpegs[0], jpegs[2]]
    texts = INSTRUCTIONS[:4]
    want = model.make_state([decode_jpeg(f) for f in frames], texts)
    for _ in range(2):  # computed, then read back from the cache
        got = cached.make_state(frames, texts)
        assert set(got) == set(want)
        for key in want:
            torch.testing.assert_close(got[key], want[key], atol=0, rtol=0)
        assert len(cached.frame_cache) == 2  # the third frame is beyond max_frames
    with pytest.raises(TypeError, match="JPEG bytes"):
        cached.make_state([decode_jpeg(f) for f in frames], texts)
