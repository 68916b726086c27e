"""What the camera sees: image-space features of scene objects, and observability.

``frame_views(env)`` projects every scene object (its centre and bounding-box corners) through
the sim camera with the intrinsics of the model frame (:class:`~more_policy.vision.CameraConfig`
squashed by :func:`~more_policy.vision.to_model_frame`). An object is in view when any of those
points lies inside the image in front of the camera (occlusion is not modelled). Its features
are what perfect perception of that one frame would report: the image position (u, v) and
depth of its centre (for an object partly in view the centre may lie outside the image: its
visible extent gives it away; an object whose centre is behind the camera is left out), plus
the image row of the horizon (the camera's pitch).

Observability of an episode is the share of its frames (up to and including the terminate
step) in which a task-relevant object is in view: see :data:`RELEVANT`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from more_policy.sim import go2_mjcf

NEAR = 0.05  # m: points closer to the camera plane than this are not imaged
# Objects whose sight tells what to do next: the target, the passage or its goal marker, the
# right tray or its flag.
RELEVANT: dict[str, tuple[str, ...]] = {
    "go_to": ("target",), "distinguish": ("target",), "go_avoid": ("target",),
    "go_through": ("target", "wall_left", "wall_right", "goal_marker"),
    "crawl": ("target", "post_left", "post_right", "goal_marker"),
    "unload": ("target", "target_flag"),
}


@dataclass
class ObjectView:
    """One object in view: its centre's image position [px] and depth along the axis [m]."""

    name: str
    kind: str
    u: float
    v: float
    depth: float


@dataclass
class FrameView:
    """Everything a perfect single-frame perceiver reports (model-frame pixels)."""

    width: int
    height: int
    intrinsics: tuple[float, float, float, float]  # fx, fy, cx, cy
    horizon_v: float  # image row of the horizon (above the image when pitched down a lot)
    objects: dict[str, ObjectView]


def _corners(obj) -> np.ndarray:
    """(9, 3) world points: the object's centre and the corners of its bounding box."""
    size = obj.size
    if obj.kind in ("ball",):
        half = np.array([size[0]] * 3)
    elif len(size) == 2 and obj.kind == "bar":  # horizontal cylinder across the gate
        half = np.array([size[0], size[1], size[0]])
    elif len(size) == 2:  # upright cylinder
        half = np.array([size[0], size[0], size[1]])
    else:
        half = np.asarray(size, dtype=float)
    c, s = math.cos(obj.yaw), math.sin(obj.yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    return np.vstack([np.asarray(obj.pos), np.asarray(obj.pos) + (signs * half) @ rot.T])


def frame_views(env, height: int | None = None, width: int | None = None) -> FrameView:
    """The image-space view of ``env``'s current frame (model frame ``env.image_size``)."""
    h, w = height or env.image_size[0], width or env.image_size[1]
    model, data = env.physics.model, env.physics.data
    mujoco.mj_camlight(model, data)  # camera poses from the current body poses
    cam = model.camera(go2_mjcf.CAMERA_NAME).id
    centre, rot = data.cam_xpos[cam], data.cam_xmat[cam].reshape(3, 3)  # columns: x, y, -view
    fx, fy, cx, cy = env.camera.intrinsics(w, h)
    forward = -rot[:, 2]
    pitch_down = math.asin(float(np.clip(-forward[2], -1.0, 1.0)))
    horizon_v = cy - fy * math.tan(pitch_down)
    objects = {}
    for obj in env.scene.objects:
        local = (_corners(obj) - centre) @ rot  # camera frame: x right, y up, -z forward
        depth = -local[:, 2]
        front = depth > NEAR
        u = cx + fx * local[:, 0] / np.where(front, depth, 1.0)
        v = cy - fy * local[:, 1] / np.where(front, depth, 1.0)
        inside = front & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        if inside.any() and front[0]:  # (a centre behind the camera has no image position)
            objects[obj.name] = ObjectView(obj.name, obj.kind, float(u[0]), float(v[0]),
                                           float(depth[0]))
    return FrameView(w, h, (fx, fy, cx, cy), horizon_v, objects)


def relevant_in_view(view: FrameView, task: str) -> bool:
    """A task-relevant object (see :data:`RELEVANT`) is in the image."""
    return any(name in view.objects for name in RELEVANT[task])
