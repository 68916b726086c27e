"""QUARD raw layout -> episode dataset, on a small fixture in QUARD's layout."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from more_policy.data import DatasetError, EpisodeDataset
from more_policy.data.quard import convert_quard
from more_policy.data.validate import validate_dataset


def write_episode(ep_dir, n, vx, as_vector=False, seed=0):
    rng = np.random.default_rng(seed)
    (ep_dir / "command").mkdir(parents=True)
    (ep_dir / "image").mkdir()
    (ep_dir / "depth").mkdir()
    for s in range(n):
        if as_vector:  # QUART order: [T, dx, dy, dyaw, height, freq, g0, g1, g2, swing,
            #                          pitch, stance]
            cmd = np.array([0, vx + 0.01 * s, -0.1, 0.2, 0.05, 3.0, 0.5, 0, 0, 0.1, 0.0, 0.2])
        else:
            cmd = {"x_vel_cmd": np.array([vx + 0.01 * s]), "y_vel_cmd": -0.1,
                   "yaw_vel_cmd": 0.2, "body_height_cmd": 0.05, "step_frequency_cmd": 3.0,
                   "gait ": np.array([0.5, 0.0, 0.0]), "footswing_height_cmd": 0.1,
                   "pitch_cmd": 0.0, "roll_cmd": 0.0, "stance_width_cmd": 0.2}
        np.save(ep_dir / "command" / f"{s:03d}.npy", cmd, allow_pickle=True)
        img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        cv2.imwrite(str(ep_dir / "image" / f"{s:03d}.png"), img)


@pytest.fixture
def quard(tmp_path):
    root = tmp_path / "quard"
    write_episode(root / "go_to" / "000000", 73, vx=0.5)
    write_episode(root / "go_to" / "000001", 40, vx=0.5)        # <= 50 frames: dropped
    write_episode(root / "crawl" / "000000", 61, vx=1.0, as_vector=True)
    return root


def test_convert_subsamples_filters_and_terminates(quard, tmp_path):
    out = convert_quard(quard, tmp_path / "out", image_size=(24, 32), progress=False)
    ds = EpisodeDataset(out, shuffle=False)
    assert ds.meta["rate_hz"] == 5.0 and ds.meta["image_shape"] == [24, 32, 3]
    assert ds.meta["num_episodes"] == 2
    assert ds.meta["tasks"]["go_to"]["steps"] == 8 and ds.meta["tasks"]["crawl"]["steps"] == 7
    space = ds.action_space
    # Ranges from the data: vel_x spans both episodes' kept samples; gait fixed to [0, 1].
    vx = space.dims[space.index("vel_x")]
    assert vx.low == pytest.approx(0.5) and vx.high == pytest.approx(1.6)
    assert space.dims[space.index("gait_phase")].high == 1.0
    samples = list(ds)
    by_task = {t: [s for s in samples if s["task"] == t] for t in ("go_to", "crawl")}
    go_to = sorted(by_task["go_to"], key=lambda s: s["step"])
    # every 10th 50 Hz step: commands at raw steps 0, 10, ..., 70
    np.testing.assert_allclose([s["command"][0] for s in go_to],
                               [0.5 + 0.01 * k for k in range(0, 73, 10)], rtol=1e-6)
    terminate = space.index("terminate")
    assert [s["command"][terminate] for s in go_to] == [0.0] * 7 + [1.0]
    assert go_to[-1]["done"] and go_to[-1]["reward"] == 1.0
    crawl = sorted(by_task["crawl"], key=lambda s: s["step"])
    # the 12-vector was reordered from QUART's order into ours
    c = crawl[0]["command"]
    assert c[space.index("stance_width")] == pytest.approx(0.2)
    assert c[space.index("swing_height")] == pytest.approx(0.1)
    assert c[space.index("body_height")] == pytest.approx(0.05)
    assert go_to[0]["instruction"] == "go to at a normal speed with a trotting gait"
    assert validate_dataset(out) == []


def test_corrupt_input_names_the_file_and_writes_nothing(quard, tmp_path):
    bad = quard / "crawl" / "000000" / "image" / "020.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="020.png"):
        convert_quard(quard, tmp_path / "out", progress=False)
    with pytest.raises(DatasetError, match="missing"):
        EpisodeDataset(tmp_path / "out")
    (quard / "go_to" / "000000" / "command" / "010.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DatasetError, match="010.npy"):
        convert_quard(quard, tmp_path / "out2", progress=False)
