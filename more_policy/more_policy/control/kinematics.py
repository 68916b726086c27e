"""Go2 leg kinematics in the trunk frame (x forward, y left, z up), SDK leg order.

Each leg: hip abduction about x at the hip ``(+-HIP_OFFSET_X, +-HIP_OFFSET_Y, 0)``, then the
thigh joint offset ``side * HIP_TO_THIGH_Y`` along the abducted y axis, thigh and calf pitch
about y with the links pointing down at zero (positive thigh swings the foot backwards).
"""

from __future__ import annotations

import numpy as np

from more_policy.robot.go2 import (
    CALF_LENGTH,
    HIP_OFFSET_X,
    HIP_OFFSET_Y,
    HIP_TO_THIGH_Y,
    LEG_FRONT,
    LEG_SIDE,
    NUM_MOTORS,
    THIGH_LENGTH,
)

HIP_POSITIONS = np.stack([LEG_FRONT * HIP_OFFSET_X, LEG_SIDE * HIP_OFFSET_Y, np.zeros(4)], 1)
L1, L2 = THIGH_LENGTH, CALF_LENGTH
MAX_EXTENSION = 0.98  # clamped targets stop short of a straight (singular) leg
_FULL_EXTENSION_TOL = 1e-9  # a target clamped to exactly L1 + L2 may land a rounding error past


class UnreachableError(ValueError):
    """A foot target outside the leg's workspace."""


def leg_fk(q_leg: np.ndarray, leg: int) -> np.ndarray:
    """(3,) foot position relative to the hip joint for joint angles (hip, thigh, calf)."""
    a, t1, t2 = q_leg
    d = LEG_SIDE[leg] * HIP_TO_THIGH_Y
    x = -L1 * np.sin(t1) - L2 * np.sin(t1 + t2)
    z = -L1 * np.cos(t1) - L2 * np.cos(t1 + t2)  # in the abducted leg plane
    return np.array([x, d * np.cos(a) - z * np.sin(a), d * np.sin(a) + z * np.cos(a)])


def leg_ik(foot: np.ndarray, leg: int) -> np.ndarray:
    """(hip, thigh, calf) putting the foot at ``foot`` (relative to the hip joint); knee back."""
    x, y, z = foot
    d = LEG_SIDE[leg] * HIP_TO_THIGH_Y
    r2 = y * y + z * z
    if r2 <= d * d:
        raise UnreachableError(f"leg {leg}: foot {foot} is inside the hip offset circle")
    depth = np.sqrt(r2 - d * d)  # leg length projected on the abducted plane
    a = np.arctan2(z, y) - np.arctan2(-depth, d)
    a = (a + np.pi) % (2 * np.pi) - np.pi
    reach2 = x * x + depth * depth
    cos_knee = (reach2 - L1 * L1 - L2 * L2) / (2 * L1 * L2)
    if not -1.0 - _FULL_EXTENSION_TOL <= cos_knee <= 1.0 + _FULL_EXTENSION_TOL:
        raise UnreachableError(f"leg {leg}: foot {foot} is {np.sqrt(reach2):.3f} m from the "
                               f"thigh joint, reach is [{abs(L1 - L2):.3f}, {L1 + L2:.3f}]")
    t2 = -np.arccos(np.clip(cos_knee, -1.0, 1.0))
    t1 = np.arctan2(-x, depth) - np.arctan2(L2 * np.sin(t2), L1 + L2 * np.cos(t2))
    return np.array([a, t1, t2])


def forward_kinematics(q: np.ndarray) -> np.ndarray:
    """(4, 3) feet in the trunk frame for the (12,) joint vector."""
    q = np.asarray(q, dtype=np.float64).reshape(4, 3)
    return np.stack([HIP_POSITIONS[i] + leg_fk(q[i], i) for i in range(4)])


def inverse_kinematics(feet: np.ndarray, clamp: bool = True,
                       max_extension: float = MAX_EXTENSION) -> np.ndarray:
    """(12,) joints for (4, 3) foot targets in the trunk frame. With ``clamp``, targets out of
    reach are pulled back along the hip->foot line to ``max_extension`` of a straight leg;
    without, they raise :class:`UnreachableError`."""
    if not 0.0 < max_extension <= 1.0:
        raise ValueError(f"max_extension must be in (0, 1], got {max_extension}")
    feet = np.asarray(feet, dtype=np.float64)
    if feet.shape != (4, 3):
        raise ValueError(f"feet must have shape (4, 3), got {feet.shape}")
    q = np.empty(NUM_MOTORS)
    for i in range(4):
        rel = feet[i] - HIP_POSITIONS[i]
        if clamp:
            rel = _clamp_reach(rel, i, max_extension * (L1 + L2))
        q[3 * i:3 * i + 3] = leg_ik(rel, i)
    return q


def _clamp_reach(rel: np.ndarray, leg: int, max_reach: float) -> np.ndarray:
    d = HIP_TO_THIGH_Y
    x, y, z = rel
    depth2 = y * y + z * z - d * d
    reach = np.sqrt(max(depth2, 0.0) + x * x)
    if reach <= max_reach:
        return rel
    scale = max_reach / reach  # shrink the in-plane part, keep the lateral offset
    depth = np.sqrt(max(depth2, 0.0)) * scale
    a = np.arctan2(z, y) - np.arctan2(-np.sqrt(max(depth2, 1e-12)), LEG_SIDE[leg] * d)
    dd = LEG_SIDE[leg] * d
    return np.array([x * scale, dd * np.cos(a) + depth * np.sin(a),
                     dd * np.sin(a) - depth * np.cos(a)])


def leg_jacobian(q_leg: np.ndarray, leg: int, eps: float = 1e-6) -> np.ndarray:
    """(3, 3) d foot / d (hip, thigh, calf), by central differences of :func:`leg_fk`."""
    jac = np.empty((3, 3))
    for j in range(3):
        step = np.zeros(3)
        step[j] = eps
        jac[:, j] = (leg_fk(q_leg + step, leg) - leg_fk(q_leg - step, leg)) / (2 * eps)
    return jac
