"""Scripted expert: a per-task waypoint planner plus a pure-pursuit tracker at 5 Hz.

The planner reads the scene (privileged, like QUART's scripted data collection) and returns a
path ending at a *focus point* (the target, or a point beyond the passage) and the distance
from it at which to stop. The tracker steers towards a look-ahead point on the path
(omega = 2 v sin(alpha) / L), ramps the speed down to stop there, and applies each task's
posture: crouch under the crawl bar, pitch nose-down at the tray to roll the ball off. It
emits terminate = 1 once stopped at the goal (for unload: once the trunk is tilted past the
ball holder's release, which the frame shows).

Unlike QUART's expert, the go_avoid expert keeps facing the target and passes the obstacle
with a sideways step, so the target never leaves the camera image (single-frame policies
must see what they steer by).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from more_policy.actions import ActionSpace
from more_policy.sim import env as sim_env
from more_policy.sim.scenes import OBSTACLE_SIZE, Scene
from more_policy.sim.tasks import GAITS, Instruction, goal_point

LOOKAHEAD = 0.8  # m (QUART's expert)
STOP_GAIN = 1.2  # 1/s: commanded speed = gain * distance left near the goal
CROUCH_HEIGHT = -0.09  # m below nominal: under the bar (top of the robot ~0.27 m)
# Crouched from 1.2 m before the gate line to the stop: past the bar only the goal marker is in
# view, and a frame cannot tell how far behind the bar is (QUART stands up 0.7 m past it).
CROUCH_FROM = -1.2  # m, robot centre along the gate axis
CRAWL_SPEED = 0.8  # m/s cap near the gate
PASSAGE_SPEED = 1.2  # m/s cap in the tunnel and gate tasks (0.4 m clearance)
LEAD_IN = 0.8  # m: on the passage axis this far before the entry (entries up to 0.8 m off-centre)
UNLOAD_PITCH = 0.36  # rad nose-down, past the ball's release tilt
UNLOAD_ALIGN = 0.1  # rad: facing the tray this well at the goal, the expert starts the tilt
# The tilt is a ramp read off the frame: each command asks for the trunk's current pitch (the
# horizon row shows it) plus this step, so the command is a function of the image, not of a
# count of still steps. From zero velocities the ball holder opens (BALL_RELEASE_PITCH) only
# after several steps of the ramp, by which time the gait controller has faded the swing out:
# a tilt begun while a pace gait still sways rolls the ball off the side of the trunk.
UNLOAD_PITCH_STEP = 0.1  # rad
UNLOAD_TILTING = 0.05  # rad: at the tray and tilted this far, the tilt is under way; keep on
AVOID_CLEARANCE = OBSTACLE_SIZE[1] + 0.55  # m: obstacle half width + robot half length + margin
STOP_DISTANCES = {"go_to": 0.65, "distinguish": 0.8, "go_avoid": 0.65,
                  "unload": sim_env.BALL_DROP_FRONT}
# Facing the target when stopped (rad): inside the tasks' bearing checks (distinguish 5 deg,
# go_to 20 deg). A gait without support drifts in yaw on the last, slow metres.
FACE_TOLERANCE = {"distinguish": 0.05, "go_to": 0.15, "go_avoid": 0.15}


@dataclass
class Plan:
    path: np.ndarray  # (N, 2) waypoints, the last one the focus point
    stop_distance: float  # stop this far (along the path) before the focus point
    crouch: bool = False
    unload: bool = False
    lengths: np.ndarray = field(init=False)  # (N,) cumulative arc length

    def __post_init__(self):
        self.path = np.asarray(self.path, dtype=float)
        seg = np.linalg.norm(np.diff(self.path, axis=0), axis=1)
        self.lengths = np.concatenate([[0.0], np.cumsum(seg)])

    @property
    def goal_s(self) -> float:
        return max(0.0, float(self.lengths[-1]) - self.stop_distance)

    def project(self, xy: np.ndarray) -> float:
        """Arc length of the path point nearest to ``xy``."""
        best, best_s = math.inf, 0.0
        for i in range(len(self.path) - 1):
            a, b = self.path[i], self.path[i + 1]
            ab = b - a
            t = float(np.clip(np.dot(xy - a, ab) / max(np.dot(ab, ab), 1e-9), 0.0, 1.0))
            d = np.linalg.norm(a + t * ab - xy)
            if d < best:
                best, best_s = d, self.lengths[i] + t * np.linalg.norm(ab)
        return best_s

    def point_at(self, s: float) -> np.ndarray:
        s = float(np.clip(s, 0.0, self.lengths[-1]))
        i = int(np.clip(np.searchsorted(self.lengths, s) - 1, 0, len(self.path) - 2))
        seg = self.lengths[i + 1] - self.lengths[i]
        t = 0.0 if seg <= 0 else (s - self.lengths[i]) / seg
        return self.path[i] + t * (self.path[i + 1] - self.path[i])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(np.linalg.norm(v), 1e-9)


def plan(scene: Scene, start_xy: np.ndarray, target: str | None = None) -> Plan:
    """Waypoints for ``scene`` from ``start_xy``; ``target`` overrides the object to reach."""
    task = scene.task
    obj = scene.object(target or scene.target)
    start, focus = np.asarray(start_xy, dtype=float), np.array(obj.pos[:2])
    if task in ("go_to", "distinguish", "unload"):
        return Plan([start, focus], STOP_DISTANCES[task], unload=task == "unload")
    if task == "go_avoid":
        obstacle = scene.object("obstacle")
        o = np.array(obstacle.pos[:2])
        u = _unit(focus - start)
        n = np.array([-u[1], u[0]])
        other = scene.distractor()
        side = -1.0 if other is not None and np.dot(np.array(other.pos[:2]) - o, n) > 0 else 1.0
        clear = AVOID_CLEARANCE
        a = o - 0.5 * u + side * clear * n
        b = o + 0.45 * u + side * clear * n
        return Plan([start, a, b, focus], STOP_DISTANCES[task])
    # go_through / crawl: line up on the passage axis, go through, stop past it
    axis = np.array([math.cos(scene.frame_yaw), math.sin(scene.frame_yaw)])
    entry = np.asarray(scene.frame_pos)
    goal = goal_point(scene)
    approach = approach_curve(start, scene.start_yaw, entry - LEAD_IN * axis, axis)
    return Plan([*approach, entry, goal + 0.5 * axis], 0.5, crouch=task == "crawl")


def approach_curve(p0: np.ndarray, yaw0: float, p1: np.ndarray, tangent1: np.ndarray,
             n: int = 12) -> list[np.ndarray]:
    """A smooth cubic from p0 (heading yaw0) to p1 (heading tangent1), as n points."""
    k = np.linalg.norm(p1 - p0)
    m0, m1 = k * np.array([math.cos(yaw0), math.sin(yaw0)]), k * _unit(tangent1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    h00, h10 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t
    h01, h11 = -2 * t**3 + 3 * t**2, t**3 - t**2
    return list(h00 * p0 + h10 * m0 + h01 * p1 + h11 * m1)


class ScriptedExpert:
    """Emits 12-d SI commands for one episode from the robot's pose (x, y, z, yaw, pitch)."""

    def __init__(self, action_space: ActionSpace | None = None, lookahead: float = LOOKAHEAD):
        self.space = action_space or ActionSpace()
        self.lookahead = lookahead
        self.plan: Plan | None = None

    def reset(self, scene: Scene, instruction: Instruction, start_pose: np.ndarray,
              target: str | None = None, path: Plan | None = None) -> None:
        """Plan the episode (or follow ``path``, planned elsewhere) from ``start_pose``."""
        self.scene, self.instruction = scene, instruction
        self.plan = path or plan(scene, np.asarray(start_pose[:2]), target)
        self._prev_xy = np.asarray(start_pose[:2], dtype=float)
        self.finished = False

    def act(self, pose: np.ndarray) -> np.ndarray:
        if self.plan is None:
            raise RuntimeError("call reset(scene, instruction, start_pose) first")
        xy, yaw = np.asarray(pose[:2], dtype=float), float(pose[3])
        speed = np.linalg.norm(xy - self._prev_xy) * 5.0  # m/s at the 5 Hz policy rate
        self._prev_xy = xy
        p = self.plan
        s = p.project(xy)
        left = p.goal_s - s
        if not p.unload:  # also by the straight distance: one that drifted off is not there
            left = max(left, float(np.linalg.norm(p.path[-1] - xy)) - p.stop_distance)
        look = p.point_at(s + self.lookahead)
        if np.linalg.norm(look - xy) < 0.05:
            look = p.path[-1]
        alpha = math.remainder(math.atan2(look[1] - xy[1], look[0] - xy[0]) - yaw, math.tau)
        v = float(np.clip(STOP_GAIN * left, 0.0, self.instruction.speed))
        if left < 0.04:
            v = 0.0
        v *= max(0.15, math.cos(alpha)) ** 2  # slow down to turn; on the spot when far off
        if p.crouch or self.scene.task == "go_through":
            v = min(v, PASSAGE_SPEED)
        cmd = self.base_command()
        height = 0.0
        if p.crouch:
            u = float(np.dot(xy - np.asarray(self.scene.frame_pos),
                             [math.cos(self.scene.frame_yaw), math.sin(self.scene.frame_yaw)]))
            if u >= CROUCH_FROM:
                height, v = CROUCH_HEIGHT, min(v, CRAWL_SPEED)
        omega = 2.0 * max(v, 0.4) * math.sin(alpha) / self.lookahead
        vy = 0.0
        if self.scene.task == "go_avoid":  # face the target, walk the path sideways
            v, vy, omega = self._sidestep(xy, yaw, look, left)
        face_focus = p.unload or self.scene.task in FACE_TOLERANCE
        if left < 0.08:  # at the goal: face the focus point (target box, tray) or hold
            focus = p.path[-1]
            alpha = math.remainder(math.atan2(focus[1] - xy[1], focus[0] - xy[0]) - yaw,
                                   math.tau)
            omega = 2.0 * alpha if face_focus else 0.0
        cmd[0], cmd[1], cmd[2], cmd[7] = v, vy, omega, height
        at_goal = left < 0.08 and speed < 0.08
        if p.unload:
            if left < 0.08 and (abs(alpha) < UNLOAD_ALIGN or float(pose[4]) >= UNLOAD_TILTING):
                self._tilt(cmd, float(pose[4]))
        else:
            self.finished = at_goal and (not face_focus
                                         or abs(alpha) < FACE_TOLERANCE[self.scene.task])
        cmd[11] = 1.0 if self.finished else 0.0
        return self.space.clip(cmd)

    def _tilt(self, cmd: np.ndarray, pitch: float) -> None:
        """At the tray, aligned: stand (zero velocities) and ramp the pitch nose-down."""
        cmd[0], cmd[1], cmd[2] = 0.0, 0.0, 0.0
        cmd[8] = min(UNLOAD_PITCH, max(pitch, 0.0) + UNLOAD_PITCH_STEP)
        self.finished = pitch >= sim_env.BALL_RELEASE_PITCH

    def _sidestep(self, xy: np.ndarray, yaw: float, look: np.ndarray, left: float
                  ) -> tuple[float, float, float]:
        """(vel_x, vel_y, yaw_rate) moving towards ``look`` while turning to the target."""
        focus = self.plan.path[-1]
        facing = math.remainder(math.atan2(focus[1] - xy[1], focus[0] - xy[0]) - yaw, math.tau)
        travel = math.remainder(math.atan2(look[1] - xy[1], look[0] - xy[0]) - yaw, math.tau)
        speed = float(np.clip(STOP_GAIN * left, 0.0, self.instruction.speed))
        if left < 0.04:
            speed = 0.0
        vx, vy = speed * max(math.cos(travel), 0.0), speed * math.sin(travel)
        scale = min(1.0, self.space.high[1] / max(abs(vy), 1e-9))  # lateral speed limit
        return vx * scale, vy * scale, 2.0 * facing

    def base_command(self) -> np.ndarray:
        """Standing command with the instruction's gait."""
        cmd = self.space.default_command()
        names = self.space.names
        phase, offset, bound = GAITS[self.instruction.gait]
        cmd[names.index("gait_phase")] = phase
        cmd[names.index("gait_offset")] = offset
        cmd[names.index("gait_bound")] = bound
        cmd[names.index("step_frequency")] = 3.5 if self.instruction.speed > 1.2 else 3.0
        return cmd
