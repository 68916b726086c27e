"""`more model ...` subcommands, run through an argparse parser like the `more` entry point."""

import argparse

import imageio.v3 as iio
import numpy as np
import pytest

from more_policy.model.cli import register


def run(argv):
    parser = argparse.ArgumentParser(prog="more")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "ckpt"
    assert run(["model", "init", "--out", str(out), "--rank", "4", "--attn-rank", "4"]) == 0
    return out


def test_init_and_info(checkpoint, capsys):
    assert (checkpoint / "adapter_model.safetensors").is_file()
    assert run(["model", "info", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "tokens 512..767" in out and '"backbone": "tiny"' in out and "trainable" in out


def test_count_full_config(capsys):
    assert run(["model", "count"]) == 0
    out = capsys.readouterr().out
    assert "paper (MoRE, Fuyu-8B): 9.82 B total; this config 9.817 B" in out


def test_act_on_an_image_file(checkpoint, tmp_path, capsys):
    image = tmp_path / "frame.png"
    iio.imwrite(image, np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    assert run(["model", "act", str(checkpoint), "--image", str(image),
                "--instruction", "go to the red ball"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[0] == "vel_x" and lines[-1].split()[0] == "terminate"
    assert len(lines) == 13


def test_quantize_reports_memory_and_error(checkpoint, capsys):
    assert run(["model", "quantize", str(checkpoint), "--to", "int8", "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "int8" in out and "greedy actions agree" in out


def test_bad_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a MoRE checkpoint"):
        run(["model", "info", str(tmp_path)])
