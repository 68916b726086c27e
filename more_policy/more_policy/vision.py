"""The robot's camera (a RealSense D435 colour stream) and the one rule that makes model frames.

The policy sees the D435 *colour* stream, not its depth stream: 69.4 x 42.5 deg at 16:9; the
default 640 x 480 profile is a 4:3 crop of it, ~55 x 42.5 deg. :class:`CameraConfig` holds
the intrinsics and where the camera sits on the Go2 (one place: the sim's MJCF camera, the
perception oracle and the docs read it from here).

:func:`to_model_frame` is the only way a camera frame becomes a model frame; the simulator,
the dataset writers (sim generator, rosbag converter), the policy node and eval-bag all call
it (the latter two through the model's ``resize_images``):

1. a frame that is not square is a camera frame: it is centre-cropped to the colour stream's
   4:3 (a 16:9 frame becomes the crop the 640 x 480 profile delivers; 4:3 passes whole);
2. it is then squashed to ``size`` x ``size`` with area averaging (QUART squashes too), so
   the whole 4:3 field of view reaches the model and letters are 25 % narrower than tall;
3. a square frame is already a model frame (a dataset's); it is only resized.

The training resolution is 240 x 240: Fuyu's 30 px patches tile it 8 x 8 (the tiny test
backbone's 16 px patches 15 x 15), and at 240 px a 0.4 m letter box 3 m away is ~40 px tall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

CAMERA_ASPECT = 4.0 / 3.0  # width / height of the colour profile the policy is trained on
MODEL_FRAME_SIZE = 240  # px, square model frames (a multiple of Fuyu's 30 px patches)
# Rotation camera body frame (x forward, y left, z up) -> optical frame (z forward, x right,
# y down; REP 103), wxyz: what realsense-ros publishes for camera_link -> *_optical_frame.
OPTICAL_FROM_CAMERA_QUAT = (0.5, -0.5, 0.5, -0.5)


class FrameError(ValueError):
    """A frame that is not an RGB uint8 image, or an impossible target size."""


@dataclass(frozen=True)
class CameraConfig:
    """Pinhole model of the D435 colour stream and its mount on the Go2 head.

    ``mount_xyz`` is the optical centre in the trunk frame (x forward, z up); ``pitch_down_deg``
    tilts the optical axis below the trunk's x axis. The nodes publish this mount as the static
    TFs base_link -> camera_link -> camera_color_optical_frame.
    """

    width: int = 640
    height: int = 480
    vfov_deg: float = 42.5  # D435 colour: 69.4 x 42.5 deg at 16:9, the 4:3 profile crops x
    mount_xyz: tuple[float, float, float] = (0.30, 0.0, 0.05)
    pitch_down_deg: float = 10.0

    def __post_init__(self):
        if self.width < 1 or self.height < 1 or not 0.0 < self.vfov_deg < 180.0:
            raise FrameError(f"bad camera: {self.width}x{self.height}, vfov {self.vfov_deg}")

    @property
    def hfov_deg(self) -> float:
        half = math.atan(math.tan(math.radians(self.vfov_deg) / 2) * self.width / self.height)
        return math.degrees(2 * half)

    def intrinsics(self, width: int | None = None, height: int | None = None
                   ) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) in pixels of an image of ``width`` x ``height`` at this camera's
        aspect (default: the native resolution); a squashed model frame scales fx alone."""
        w, h = width or self.width, height or self.height
        fy = (h / 2) / math.tan(math.radians(self.vfov_deg) / 2)
        fx = fy * (w / h) / (self.width / self.height)
        return fx, fy, w / 2, h / 2

    @property
    def mount_quat(self) -> tuple[float, float, float, float]:
        """Rotation trunk -> camera body frame (x forward, y left, z up), wxyz: a pitch of
        ``pitch_down_deg`` about the trunk's y axis (positive pitch is nose down, REP 103)."""
        half = math.radians(self.pitch_down_deg) / 2
        return (math.cos(half), 0.0, math.sin(half), 0.0)

    def render_size(self, height: int) -> tuple[int, int]:
        """(height, width) at this camera's aspect for a render ``height`` px tall."""
        return height, round(height * self.width / self.height)


D435_COLOR = CameraConfig()


def to_model_frame(image: np.ndarray, size: int | tuple[int, int] = MODEL_FRAME_SIZE
                   ) -> np.ndarray:
    """A camera (or model) frame -> the (H, W, 3) uint8 model frame; see the module doc."""
    h_out, w_out = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h_out < 1 or w_out < 1:
        raise FrameError(f"model frame size must be >= 1, got {size}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise FrameError(f"expected an HxWx3 uint8 RGB frame, got shape {image.shape} dtype "
                         f"{image.dtype}")
    h, w = image.shape[:2]
    if h != w:  # a camera frame: centre crop to 4:3
        if w > h * CAMERA_ASPECT:
            keep = round(h * CAMERA_ASPECT)
            image = image[:, (w - keep) // 2:(w - keep) // 2 + keep]
        else:
            keep = round(w / CAMERA_ASPECT)
            image = image[(h - keep) // 2:(h - keep) // 2 + keep]
    if image.shape[:2] == (h_out, w_out):
        return np.ascontiguousarray(image)
    shrink = image.shape[0] > h_out or image.shape[1] > w_out
    return cv2.resize(image, (w_out, h_out),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
