"""The D435 colour camera model and the one camera-frame -> model-frame rule."""

import numpy as np
import pytest

from more_policy.model.backbones import resize_images
from more_policy.vision import D435_COLOR, CameraConfig, FrameError, to_model_frame


def test_the_colour_stream_at_640x480_sees_about_55_by_42_degrees():
    assert D435_COLOR.vfov_deg == pytest.approx(42.5)
    assert D435_COLOR.hfov_deg == pytest.approx(54.8, abs=0.5)
    wide = CameraConfig(width=1920, height=1080)
    assert wide.hfov_deg == pytest.approx(69.4, abs=0.5)  # the 16:9 datasheet figure
    fx, fy, cx, cy = D435_COLOR.intrinsics(240, 240)  # a squashed model frame
    assert (cx, cy) == (120, 120) and fx == pytest.approx(0.75 * fy)
    with pytest.raises(FrameError, match="bad camera"):
        CameraConfig(vfov_deg=0.0)


def _frame(h, w):
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = 200  # left half bright
    img[0, :, 1] = 255  # top row green
    return img


def test_a_4_3_frame_is_squashed_whole_and_a_16_9_frame_cropped_to_4_3_first():
    out = to_model_frame(_frame(480, 640), 240)
    assert out.shape == (240, 240, 3) and out.dtype == np.uint8
    assert out[120, 110, 0] == 200 and out[120, 130, 0] == 0  # the middle stays the middle
    wide = np.zeros((720, 1280, 3), np.uint8)
    wide[:, 160:1120] = 255  # the 4:3 centre (960 px) of a 16:9 frame
    assert (to_model_frame(wide, 240) == 255).all()  # only the 4:3 centre survives
    tall = np.full((640, 480, 3), 7, np.uint8)
    assert to_model_frame(tall, 240).shape == (240, 240, 3)


def test_square_frames_are_model_frames_and_only_resized():
    square = _frame(240, 240)
    np.testing.assert_array_equal(to_model_frame(square, 240), square)
    assert to_model_frame(square, 32).shape == (32, 32, 3)
    assert to_model_frame(_frame(480, 640), (120, 160)).shape == (120, 160, 3)


def test_the_model_resizes_through_the_same_rule():
    frames = [_frame(480, 640), _frame(720, 1280), _frame(240, 240)]
    batch = resize_images(frames, 64)
    for got, frame in zip(batch, frames):
        np.testing.assert_array_equal(got, to_model_frame(frame, 64))


def test_bad_frames_raise_clear_errors():
    with pytest.raises(FrameError, match="uint8"):
        to_model_frame(np.zeros((4, 4, 3), np.float32), 4)
    with pytest.raises(FrameError, match="HxWx3"):
        to_model_frame(np.zeros((4, 4), np.uint8), 4)
    with pytest.raises(FrameError, match=">= 1"):
        to_model_frame(np.zeros((4, 4, 3), np.uint8), 0)
