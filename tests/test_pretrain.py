"""`more pretrain`: questions from scenes, exact resume, and the HF directory MoRE loads."""

import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import FuyuForCausalLM

from more_policy.model import MoREConfig, MoREPolicy
from more_policy.model.checkpoint import copy_checkpoint
from more_policy.pretrain import pretrain_preset
from more_policy.pretrain.data import SplitSpec, render_split
from more_policy.pretrain.gates import ridge_probe
from more_policy.pretrain.model import QAEncoder, build_backbone
from more_policy.pretrain.questions import ObjectView, object_views, questions
from more_policy.pretrain.train import latest_checkpoint, pretrain
from more_policy.sim.env import make_env

RED_BALL = ObjectView("target", "ball", "red", "", 0.2, 0.5, 2.0, True)
BLUE_BALL = ObjectView("distractor", "ball", "blue", "", 0.8, 0.5, 3.5, True)
TUNNEL_BEHIND = ObjectView("roof", "tunnel", "green", "", 2.0, 2.0, 1.0, False)


def _answers(qa, family):
    return {q: a for f, q, a in qa if f == family}


def test_questions_follow_the_camera_view():
    qa = questions([RED_BALL, BLUE_BALL, TUNNEL_BEHIND], RED_BALL, "go to the red ball")
    assert _answers(qa, "colour")["what colour is the ball on the left?"] == "red"
    assert _answers(qa, "colour")["what colour is the ball on the right?"] == "blue"
    assert _answers(qa, "side") == {"where is the red ball?": "left",
                                    "where is the blue ball?": "right"}
    assert _answers(qa, "distance")["how far is the blue ball?"] == "far"
    assert _answers(qa, "shape")["what shape is the red object?"] == "ball"
    # the tunnel is out of view: never named, and not 'ahead'
    assert not any("green" in q or "green" in a for _, q, a in qa)
    assert _answers(qa, "presence")["is there a tunnel ahead?"] == "no"
    assert _answers(qa, "caption") == {"list the objects from left to right.":
                                       "red ball, blue ball"}
    assert set(_answers(qa, "goal").values()) == {"2"}
    # no family leaks an action or a command
    assert not any(a in ("forward", "turn", "stop") for _, _, a in qa)


def test_goal_out_of_view_is_answered_none():
    qa = questions([TUNNEL_BEHIND], TUNNEL_BEHIND, "go through the tunnel")
    assert set(_answers(qa, "goal").values()) == {"none"}
    assert _answers(qa, "caption") == {"list the objects from left to right.": "nothing"}


@pytest.mark.sim
def test_projection_puts_a_faced_object_ahead_and_a_turn_moves_it_across():
    env = make_env("go_to", seed=0, image_size=(32, 32), render=False)
    env.reset(seed=11)
    target = np.array(env.scene.target_object.pos[:2])
    start = np.array([0.5, 0.0])
    facing = math.atan2(*(target - start)[::-1])

    def view(yaw):
        assert env.place_robot(start, yaw) is None
        views = object_views(env.scene, env.physics.model, env.physics.data)
        return next(v for v in views if v.name == "target")

    ahead, turned_left = view(facing), view(facing + 0.3)
    assert ahead.visible and abs(ahead.x - 0.5) < 0.03 and ahead.side == "ahead"
    assert turned_left.x > 0.6 and turned_left.side == "right"  # turning left: it drifts right
    assert ahead.distance == pytest.approx(np.linalg.norm(target - start), abs=0.4)
    assert not view(facing + math.pi).visible  # behind the robot


@pytest.mark.sim
def test_rendered_questions_match_the_scene_objects():
    split = render_split(SplitSpec("heldout", 1, 2, phrasing="heldout"), seed=3, image_size=32,
                         progress=False)
    assert split.images.shape[1:] == (32, 32, 3) and len(split) == 12
    assert set(split.tasks) == {"distinguish", "go_to", "go_avoid", "go_through", "crawl",
                                "unload"}
    letters = {a for qa in split.qa for f, _, a in qa if f == "letter"}
    assert letters <= set("abcdef")
    rng = np.random.default_rng(0)
    index = split.by_family()
    i, family, question, answer = split.sample(rng, index, {"presence": 1.0})
    assert family == "presence" and (family, question, answer) in split.qa[i]


def test_answer_labels_start_at_the_begin_answer_column():
    model, tokenizer = build_backbone(pretrain_preset("tiny").shape, seed=0)
    encoder = QAEncoder(model, tokenizer, 32)
    images = np.zeros((2, 32, 32, 3), np.uint8)
    batch = encoder(images, ["where is the red ball?", "is there a bar ahead?"],
                    ["left", "no"])
    p = batch["input_ids"].shape[1] - batch["labels"].shape[1]
    boa = tokenizer.convert_tokens_to_ids("<0x04>")
    assert (batch["input_ids"][:, p - 1] == boa).all()  # answers start at one column
    for row, answer in zip(batch["labels"], ["left", "no"], strict=True):
        ids = row[row >= 0].tolist()
        assert ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(ids[:-1]).strip() == answer


@pytest.mark.sim
@pytest.mark.slow
def test_tiny_pretrain_resumes_exactly_and_loads_as_a_fuyu_checkpoint(tmp_path, monkeypatch):
    cfg = replace(pretrain_preset("tiny"), max_steps=4, checkpoint_every=2,
                  out_dir=str(tmp_path / "run"), save_dir=str(tmp_path / "straight"))
    straight = pretrain(cfg)
    # interrupted after step 2: drop the last checkpoint and resume from step 2
    shutil.rmtree(latest_checkpoint(tmp_path / "run"))
    assert latest_checkpoint(tmp_path / "run").name == "step_0000002"
    with pytest.raises(ValueError, match="max_steps"):  # another schedule: refused, not mixed
        pretrain(replace(cfg, max_steps=6))
    resumed = pretrain(replace(cfg, save_dir=str(tmp_path / "resumed")))
    a = FuyuForCausalLM.from_pretrained(straight, local_files_only=True)
    b = FuyuForCausalLM.from_pretrained(resumed, local_files_only=True)
    fresh, _ = build_backbone(cfg.shape, cfg.seed)
    for (name, wa), wb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(wa, wb), name
    assert any(not torch.equal(wa, w0.to(wa.dtype)) for wa, w0 in
               zip(a.state_dict().values(), fresh.state_dict().values(), strict=True))
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json"):
        assert (straight / name).is_file()
    saved = load_file(straight / "model.safetensors")
    assert {t.dtype for t in saved.values()} == {torch.bfloat16}

    # MoRE loads it through the checkpoint-directory path: action tokens, frozen backbone
    policy = MoREPolicy.from_config(MoREConfig(backbone=str(straight), image_size=32,
                                               num_experts=2, lora_rank=2, attn_lora_rank=2))
    vocab = a.config.text_config.vocab_size
    assert policy.token_offset == vocab
    assert policy.tokenizer.convert_tokens_to_ids("<action_0>") == vocab
    frozen = dict(a.named_parameters())
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and not set(trainable) & set(frozen)
    assert not any(p.requires_grad for n, p in policy.model.named_parameters() if n in frozen)
    result = policy.act([np.full((48, 64, 3), 120, np.uint8)], ["go to the red ball"])
    assert result.bins.shape == (1, 12) and np.isfinite(result.values).all()

    # The MoRE checkpoint names its backbone relative to itself: moved together with it, it
    # loads from any working directory (a launched node's), and acts the same.
    artifacts = tmp_path / "artifacts"
    shutil.copytree(straight, artifacts / "backbones" / "sim")
    policy = MoREPolicy.from_config(replace(policy.config, backbone=str(artifacts / "backbones"
                                                                        / "sim")))
    result = policy.act([np.full((48, 64, 3), 120, np.uint8)], ["go to the red ball"])
    policy.save_pretrained(artifacts / "more")
    copied = copy_checkpoint(artifacts / "more", tmp_path / "elsewhere" / "deeper" / "more")
    assert np.array_equal(MoREPolicy.from_pretrained(copied).act(
        [np.full((48, 64, 3), 120, np.uint8)], ["go to the red ball"]).bins, result.bins)
    shutil.move(artifacts, tmp_path / "moved")
    monkeypatch.chdir(tmp_path / "moved" / "more")
    moved = MoREPolicy.from_pretrained(tmp_path / "moved" / "more")
    assert Path(moved.config.backbone) == (tmp_path / "moved" / "backbones" / "sim").resolve()
    again = moved.act([np.full((48, 64, 3), 120, np.uint8)], ["go to the red ball"])
    assert np.array_equal(again.bins, result.bins)


def test_ridge_probe_reads_a_linear_signal_and_not_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16))
    y = x @ rng.normal(size=16)
    linear = ridge_probe(x[:300], y[:300], x[300:], y[300:])
    assert linear["r_heldout"] > 0.99
    noise = ridge_probe(x[:300], rng.normal(size=300), x[300:], rng.normal(size=100))
    assert abs(noise["r_heldout"]) < 0.3
