"""The single-frame perception oracle: perfect perception of the current frame, no memory.

Each step it reads only :func:`~more_policy.baselines.views.frame_views` of the frame the
policy would see (image position and depth of the objects in view, the horizon row), turns
them into positions in the robot's level frame with the camera's calibration, and plans from
there with the scripted expert's planner and tracker as if the episode started now. It knows
which object the instruction names (grounding is privileged too), but not the robot's pose,
its speed, the step count or the world. If it reaches >= 0.95 on a task, one frame holds what
that task's commands depend on.
"""

from __future__ import annotations

import math

import numpy as np

from more_policy.actions import ActionSpace
from more_policy.baselines.views import FrameView, frame_views
from more_policy.sim import expert as sim_expert
from more_policy.sim.scenes import FLAG_DISTANCE, MARKER_GAP, TUNNEL_LENGTH, Scene, SceneObject
from more_policy.vision import D435_COLOR, CameraConfig

ORIGIN = np.zeros(2)


def to_robot_frame(view: FrameView, name: str, camera: CameraConfig = D435_COLOR
                   ) -> np.ndarray | None:
    """(x forward, y left) [m] of object ``name`` from the trunk centre, level frame; None
    when it is not in view. The camera's pitch comes from the horizon row."""
    seen = view.objects.get(name)
    if seen is None:
        return None
    fx, fy, cx, cy = view.intrinsics
    phi = math.atan2(cy - view.horizon_v, fy)  # optical axis below the horizon
    theta = phi - math.radians(camera.pitch_down_deg)  # trunk pitch, nose down
    right, down = (seen.u - cx) / fx * seen.depth, (seen.v - cy) / fy * seen.depth
    mx, _, mz = camera.mount_xyz
    x = seen.depth * math.cos(phi) - down * math.sin(phi) + mx * math.cos(theta) + mz * math.sin(
        theta)
    return np.array([x, -right])


def trunk_pitch(view: FrameView, camera: CameraConfig = D435_COLOR) -> float:
    """Nose-down trunk pitch [rad] read off the horizon row."""
    fx, fy, cx, cy = view.intrinsics
    return math.atan2(cy - view.horizon_v, fy) - math.radians(camera.pitch_down_deg)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


class OraclePolicy:
    """Single-frame perception oracle (see the module doc) in the evaluator's interface."""

    name = "oracle"
    needs_images = False

    def __init__(self, action_space: ActionSpace | None = None):
        self.space = action_space or ActionSpace()
        self._experts: dict[int, sim_expert.ScriptedExpert] = {}

    def reset(self, slot: int, env, seed: int) -> None:
        self._experts[slot] = sim_expert.ScriptedExpert(self.space)

    def act(self, slots: list[int], envs: list, obs: list) -> np.ndarray:
        return np.stack([self.act_on(self._experts[s], e.scene.task, e.instruction,
                                     frame_views(e), e.camera) for s, e in zip(slots, envs)])

    def act_on(self, expert: sim_expert.ScriptedExpert, task: str, instruction,
               view: FrameView, camera: CameraConfig = D435_COLOR) -> np.ndarray:
        """One command from one frame's view (``expert`` holds no state between calls)."""
        seen = {name: to_robot_frame(view, name, camera) for name in view.objects}
        pose = np.array([0.0, 0.0, 0.0, 0.0, trunk_pitch(view, camera)])
        scene, plan = self._scene_and_plan(task, seen)
        if plan is None:  # nothing to go by: stand still
            expert.instruction = instruction
            return self.space.clip(expert.base_command())
        expert.reset(scene, instruction, pose, path=plan)
        return expert.act(pose)

    def _scene_and_plan(self, task: str, seen: dict[str, np.ndarray]
                        ) -> tuple[Scene | None, sim_expert.Plan | None]:
        stop = sim_expert.STOP_DISTANCES.get(task, 0.0)
        if task in ("go_to", "distinguish", "go_avoid"):
            target = seen.get("target")
            if target is None:
                return None, None
            scene = _scene(task, target)
            if task == "go_avoid" and "obstacle" in seen:
                return scene, _detour(target, seen["obstacle"], seen.get("distractor"), stop)
            return scene, sim_expert.Plan([ORIGIN, target], stop)
        if task == "unload":
            flag = seen.get("target_flag")
            if flag is None:
                return None, None
            tray = flag - FLAG_DISTANCE * _unit(flag)  # the flag stands beyond the far rim
            return _scene(task, tray), sim_expert.Plan([ORIGIN, tray], stop, unload=True)
        return _passage(task, seen)


def _scene(task: str, target_xy: np.ndarray) -> Scene:
    return Scene(task, [SceneObject("target", "target", (*target_xy, 0.0), (0.1,))], "target")


def _detour(target: np.ndarray, obstacle: np.ndarray, distractor: np.ndarray | None,
            stop: float) -> sim_expert.Plan:
    """The expert's go_avoid path around the obstacle, re-planned from here: the waypoints
    already passed (along the obstacle->target line) are dropped."""
    u = _unit(target - obstacle)
    n = np.array([-u[1], u[0]])
    offset = float(np.dot(ORIGIN - obstacle, n))
    if abs(offset) > 0.2:  # already stepped to one side: stay there
        side = math.copysign(1.0, offset)
    else:  # the expert's choice: the side away from the distractor
        side = -1.0 if distractor is not None and np.dot(distractor - obstacle, n) > 0 else 1.0
    clear = sim_expert.AVOID_CLEARANCE
    waypoints = [obstacle - 0.5 * u + side * clear * n, obstacle + 0.45 * u + side * clear * n]
    along = float(np.dot(ORIGIN - obstacle, u))
    path = [ORIGIN] + [w for w in waypoints if np.dot(w - obstacle, u) > along + 0.05]
    return sim_expert.Plan([*path, target], stop)


def _passage(task: str, seen: dict[str, np.ndarray]) -> tuple[Scene | None,
                                                               sim_expert.Plan | None]:
    """Entry, axis and stop point of the tunnel / gate from what is in view."""
    sides = ("wall_left", "wall_right") if task == "go_through" else ("post_left", "post_right")
    # the target's centre: the bar on the gate line, the roof half a tunnel in
    to_entry = TUNNEL_LENGTH / 2 if task == "go_through" else 0.0
    middle, marker = seen.get("target"), seen.get("goal_marker")
    axis = None
    if marker is not None and middle is not None:
        axis = _unit(marker - middle)
    elif all(s in seen for s in sides):
        left, right = seen[sides[0]], seen[sides[1]]
        axis = _unit(np.array([left[1] - right[1], right[0] - left[0]]))  # right->left, turned
        middle = (left + right) / 2 if middle is None else middle
    elif marker is not None:  # past the passage: the marker lies ahead on its axis
        axis = _unit(marker)
    elif middle is not None:
        axis = _unit(middle)
    if axis is None:
        return None, None
    # past the passage (its middle out of view): it lies behind, only the axis matters
    entry = middle - to_entry * axis if middle is not None else -(1.0 + to_entry) * axis
    if marker is None:  # the stop point is not in view yet: aim through the passage
        goal = entry + (2 * to_entry + 1.5) * axis
    else:
        goal = marker - MARKER_GAP * axis
    beyond = float(np.dot(goal - entry, axis)) - 2 * to_entry
    scene = Scene(task, [], "target", frame_pos=tuple(entry), frame_yaw=math.atan2(*axis[::-1]),
                  goal_beyond=beyond)
    lead = entry - sim_expert.LEAD_IN * axis
    ahead = float(np.dot(ORIGIN - lead, axis))
    if ahead < 0:  # before the lead-in point: the expert's approach curve
        path = [*sim_expert.approach_curve(ORIGIN, 0.0, lead, axis), entry]
    else:
        path = [ORIGIN, lead + ahead * axis]
    return scene, sim_expert.Plan([*path, goal + 0.5 * axis], 0.5, crouch=task == "crawl")
