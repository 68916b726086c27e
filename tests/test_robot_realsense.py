"""RealSense: record a software-device stream, play it back through the real pipeline."""

from __future__ import annotations

import time

import numpy as np
import pytest

from more_policy.robot.realsense import (
    CameraConfig,
    CameraNotFoundError,
    RealSenseCamera,
    write_synthetic_recording,
)

H, W = 480, 640


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    rng = np.random.default_rng(0)
    colors = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(4)]
    depths = [np.full((H, W), 1000 + 250 * k, dtype=np.uint16) for k in range(4)]
    path = write_synthetic_recording(tmp_path_factory.mktemp("rs") / "cam.db3", colors, depths)
    return path, colors, depths


def test_playback_gives_back_the_recorded_colour_frames(recording):
    path, colors, _ = recording
    with RealSenseCamera(CameraConfig(playback_file=str(path))) as camera:
        frames = list(camera)
    assert [f.frame_number for f in frames] == [0, 1, 2, 3]
    for frame, color in zip(frames, colors):
        assert frame.color.shape == (H, W, 3) and frame.color.dtype == np.uint8
        np.testing.assert_array_equal(frame.color, color)  # bit-exact
        assert frame.depth is None
    np.testing.assert_allclose(np.diff([f.timestamp_ms for f in frames]), 1000 / 30, rtol=1e-3)


def test_playback_with_depth_raw_and_aligned(recording):
    path, _, depths = recording
    with RealSenseCamera(CameraConfig(playback_file=str(path), depth=True,
                                      align_depth=False)) as camera:
        raw = list(camera)
    assert camera.depth_scale == pytest.approx(0.001)
    for frame, depth in zip(raw, depths):
        np.testing.assert_array_equal(frame.depth, depth)
    with RealSenseCamera(CameraConfig(playback_file=str(path), depth=True)) as camera:
        aligned = list(camera)
    assert len(aligned) == len(depths)
    for frame, depth in zip(aligned, depths):
        valid = frame.depth > 0  # rs.align leaves holes at pixel edges
        assert valid.mean() > 0.9
        np.testing.assert_array_equal(frame.depth[valid], depth[valid])
        assert frame.depth[valid][0] * frame.depth_scale == pytest.approx(depth[0, 0] / 1000)


def test_no_device_is_a_clear_error_not_a_hang():
    start = time.monotonic()
    with pytest.raises(CameraNotFoundError, match="no RealSense device connected"):
        RealSenseCamera(CameraConfig()).start()
    assert time.monotonic() - start < 5.0


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(CameraNotFoundError, match="no RealSense recording"):
        RealSenseCamera(CameraConfig(playback_file=str(tmp_path / "missing.db3"))).start()
    with pytest.raises(ValueError, match=".db3"):
        write_synthetic_recording(tmp_path / "x.bag", [np.zeros((4, 4, 3), np.uint8)])
    with pytest.raises(RuntimeError, match="not started"):
        RealSenseCamera().read()
