"""Rollout videos a person can read: the robot's camera beside a top-down view of the scene,
with the instruction, step, command and outcome written under them.

    top = TopDownView.framing(env.physics.model, start_xy, goal_xy)
    frame = rollout_frame(obs.image, top.render(env.physics.data),
                          Caption(instruction, step, command, "running"))
    write_video("go_to.mp4", frames)

One helper for every video: the closed-loop evaluator (``more eval``, the demo's sim stages)
and the demo's ROS 2 runs, which rebuild the scene from task and seed and pose the robot from
the sim's episode reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import mujoco
import numpy as np

from more_policy.actions import ActionSpace

PANEL = 240  # px: height of each picture in a frame
TEXT_ROW = 18  # px per caption line
CAPTION_LINES = 3  # instruction; step and outcome; command
FONT = cv2.FONT_HERSHEY_SIMPLEX
MARGIN_M = 0.8  # m of floor shown around the robot's start and the goal
# The command fields worth reading in a caption (all 12 are in the bag and the episode data).
CAPTION_FIELDS = ("vel_x", "vel_y", "yaw_rate", "body_height", "terminate")


@dataclass
class Caption:
    """What a frame says about the rollout at that moment."""

    instruction: str
    step: int
    command: np.ndarray | None = None  # (12,) SI values, the command taken at this step
    outcome: str = "running"  # e.g. running | success | failure: collision | timeout

    def lines(self, action_space: ActionSpace | None = None) -> list[str]:
        lines = [self.instruction, f"step {self.step}   {self.outcome}"]
        if self.command is not None:
            space = action_space or ActionSpace()
            values = dict(zip(space.names, np.asarray(self.command, dtype=float)))
            lines.append("  ".join(f"{name} {values[name]:+.2f}" for name in CAPTION_FIELDS
                                   if name in values))
        return lines


def outcome_text(success: bool, failure: str | None = None, timeout: bool = False,
                 goal_distance: float | None = None) -> str:
    """Why an episode ended, in a few words (captions, the demo's summary table)."""
    if success:
        return "success"
    if failure:
        return f"failure: {failure}"
    away = f" ({goal_distance:.2f} m from the goal)" if goal_distance is not None \
        and math.isfinite(goal_distance) else ""
    return ("timeout" if timeout else "stopped short") + away


class TopDownView:
    """A MuJoCo scene seen from straight above, framing a fixed square of floor."""

    def __init__(self, model: mujoco.MjModel, center_xy: Sequence[float], span_m: float,
                 size: int = PANEL):
        if span_m <= 0:
            raise ValueError(f"span_m must be > 0, got {span_m}")
        self.size = min(size, model.vis.global_.offwidth, model.vis.global_.offheight)
        self._renderer = mujoco.Renderer(model, self.size, self.size)
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self._camera.lookat[:] = (center_xy[0], center_xy[1], 0.0)
        self._camera.elevation, self._camera.azimuth = -90.0, 90.0  # straight down, fixed
        half_fov = math.radians(model.vis.global_.fovy) / 2
        self._camera.distance = (span_m / 2) / math.tan(half_fov)

    @classmethod
    def framing(cls, model: mujoco.MjModel, start_xy: Sequence[float],
                goal_xy: Sequence[float], size: int = PANEL) -> TopDownView:
        """A view centred between the robot's start and its goal, both in the picture."""
        start, goal = np.asarray(start_xy, float), np.asarray(goal_xy, float)
        span = float(np.max(np.abs(goal - start))) + 2 * MARGIN_M
        return cls(model, (start + goal) / 2, span, size)

    def render(self, data: mujoco.MjData) -> np.ndarray:
        self._renderer.update_scene(data, camera=self._camera)
        return self._renderer.render().copy()

    def close(self) -> None:
        self._renderer.close()


def _fit(image: np.ndarray, height: int) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return cv2.resize(np.ascontiguousarray(image, dtype=np.uint8), (width, height),
                      interpolation=cv2.INTER_AREA if image.shape[0] > height
                      else cv2.INTER_LINEAR)


def rollout_frame(camera: np.ndarray, top: np.ndarray | None, caption: Caption,
                  action_space: ActionSpace | None = None) -> np.ndarray:
    """[camera | top-down] with the caption lines on a dark band underneath (RGB uint8)."""
    panels = [_fit(camera, PANEL)] + ([_fit(top, PANEL)] if top is not None else [])
    pictures = np.concatenate(panels, axis=1)
    lines = caption.lines(action_space)
    # Fixed height (a frame before the first command has one line less): one video, one size.
    band = np.full((TEXT_ROW * CAPTION_LINES + 6, pictures.shape[1], 3), 24, dtype=np.uint8)
    for i, text in enumerate(lines):
        color = (255, 255, 255)
        if i == 1 and caption.outcome != "running":
            color = (90, 220, 90) if caption.outcome == "success" else (240, 90, 90)
        cv2.putText(band, _clip(text, pictures.shape[1]), (6, TEXT_ROW * (i + 1)), FONT, 0.45,
                    color, 1, cv2.LINE_AA)
    return np.concatenate([pictures, band], axis=0)


def _clip(text: str, width_px: int) -> str:
    """Shorten ``text`` to what fits in ``width_px`` at the caption's font size."""
    while len(text) > 4 and cv2.getTextSize(text, FONT, 0.45, 1)[0][0] > width_px - 12:
        text = text[:-4] + "..."
    return text


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float = 5.0) -> Path:
    """Frames (same shape, RGB uint8) to an H.264 mp4; overwrites ``path``."""
    import imageio.v2 as imageio

    if not frames:
        raise ValueError(f"{path}: no frames to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=1)
    return path
