"""Command tracking in MuJoCo physics: how well a controller follows one 12-d command.

Used by the walking tests and bench/bench_control_tracking.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from more_policy.robot.go2 import LowLevelController
from more_policy.sim.physics import Go2Physics

FELL_HEIGHT_M = 0.15  # trunk lower than this, or its z axis tilted past 60 deg: a fall
FELL_UPRIGHT = 0.5


@dataclass
class TrackingResult:
    """Averages over the last 80 % of the run (the first 20 % is the transient)."""

    speed: float  # body-frame forward speed [m/s]
    yaw_rate: float  # [rad/s]
    mean_height: float  # trunk height [m]
    min_height: float  # over the whole run [m]
    min_upright: float  # smallest z component of the trunk's z axis (1 = level)
    pitches: list[float] = field(default_factory=list)  # trunk pitch per control tick [rad]

    @property
    def fell(self) -> bool:
        return self.min_height < FELL_HEIGHT_M or self.min_upright < FELL_UPRIGHT


def track_command(controller: LowLevelController, command: np.ndarray, seconds: float,
                  physics: Go2Physics | None = None) -> TrackingResult:
    """Run ``controller`` on a standing Go2 (a fresh Go2Physics unless given) holding
    ``command`` for ``seconds`` of simulated time."""
    physics = physics or Go2Physics()
    controller.reset(physics.state())
    steps = int(seconds / controller.control_dt)
    substeps = int(round(controller.control_dt / physics.physics_dt))
    rot = np.zeros(9)
    forward, headings, heights, pitches, upright = [], [], [], [], 1.0
    previous = physics.base_pose()[0]
    for _ in range(steps):
        physics.apply(controller.step(physics.state(), command))
        physics.step(substeps)
        pos, quat = physics.base_pose()
        heading, pitch = physics.base_yaw_pitch()
        mujoco.mju_quat2Mat(rot, quat)
        moved = (pos - previous)[:2] / controller.control_dt
        forward.append(moved[0] * np.cos(heading) + moved[1] * np.sin(heading))
        headings.append(heading)
        heights.append(pos[2])
        pitches.append(pitch)
        upright, previous = min(upright, rot[8]), pos
    start = steps // 5
    headings = np.unwrap(headings)
    return TrackingResult(
        speed=float(np.mean(forward[start:])),
        yaw_rate=float((headings[-1] - headings[start])
                       / ((steps - 1 - start) * controller.control_dt)),
        mean_height=float(np.mean(heights[start:])), min_height=float(np.min(heights)),
        min_upright=float(upright), pitches=pitches)
