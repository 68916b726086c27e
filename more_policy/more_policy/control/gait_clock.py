"""walk-these-ways foot timing: one gait index per cycle, per-foot phases, the clock inputs.

Feet are in walk-these-ways order (FL, FR, RL, RR; Isaac Gym's alphabetical order):
foot phases = gait index + [phase + offset + bound, offset, bound, phase] (mod 1), so
phase 0.5 / offset 0 / bound 0 is a trot (FL+RR, FR+RL), all zero a pronk, bound 0.5 a pace.
A foot is in stance for phase in [0, duration) and swings for [duration, 1); the warped phase
maps stance onto [0, 0.5) and swing onto [0.5, 1) so the clock inputs sin(2 pi phase) keep a
fixed stance/swing shape whatever the duration.
"""

from __future__ import annotations

import numpy as np

WTW_TO_SDK_FEET = np.array([1, 0, 3, 2])  # SDK foot i (FR, FL, RR, RL) is wtw foot [i]


def foot_phases(gait_index: float, phase: float, offset: float, bound: float) -> np.ndarray:
    """(4,) foot phases in [0, 1), walk-these-ways foot order."""
    raw = gait_index + np.array([phase + offset + bound, offset, bound, phase])
    return np.remainder(raw, 1.0)


def warp_phases(phases: np.ndarray, duration: float) -> np.ndarray:
    """Stance [0, duration) -> [0, 0.5), swing [duration, 1) -> [0.5, 1)."""
    if not 0.0 < duration < 1.0:
        raise ValueError(f"gait duration (stance fraction) must be in (0, 1), got {duration}")
    phases = np.asarray(phases, dtype=np.float64)
    stance = phases < duration
    return np.where(stance, phases * (0.5 / duration),
                    0.5 + (phases - duration) * (0.5 / (1.0 - duration)))


class GaitClock:
    """The gait index advanced by step frequency; shared by the wtw runner and the gait
    controller so both time the feet identically."""

    def __init__(self) -> None:
        self.gait_index = 0.0

    def reset(self) -> None:
        self.gait_index = 0.0

    def advance(self, dt: float, frequency: float) -> None:
        if frequency < 0:
            raise ValueError(f"step frequency must be >= 0, got {frequency}")
        self.gait_index = float(np.remainder(self.gait_index + dt * frequency, 1.0))

    def phases(self, phase: float, offset: float, bound: float) -> np.ndarray:
        return foot_phases(self.gait_index, phase, offset, bound)

    def clock_inputs(self, phase: float, offset: float, bound: float, duration: float,
                     warp: bool = True) -> np.ndarray:
        """(4,) sin(2 pi foot phase), walk-these-ways foot order."""
        phases = self.phases(phase, offset, bound)
        if warp:
            phases = warp_phases(phases, duration)
        return np.sin(2.0 * np.pi * phases)
