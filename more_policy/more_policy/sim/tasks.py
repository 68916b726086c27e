"""Instructions and success checkers of the six tasks.

Instructions are task text + an optional speed word + "with a {gait} gait" (QUARD style).
Navigation tasks succeed when the robot stops (speed < 0.1 m/s) or terminates inside the goal
region (QUART's radii; go_to / go_avoid tighter, see GO_TO_RADIUS); unload when the ball
comes to rest within 0.10 m of the right tray.
``phrasing='train'`` draws from the templates the data uses; ``'heldout'`` from phrasings no
training episode contains (language generalisation tests). Success is sticky: once a checker
reports success it stays true for the episode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from more_policy.sim.scenes import (
    BALL_RADIUS,
    TRAY_RADIUS,
    TUNNEL_HALF_WIDTH,
    TUNNEL_LENGTH,
    Scene,
    SceneError,
)

# speed word -> cruise forward speed [m/s]; gait name -> (phase, offset, bound) (walk-these-ways)
SPEEDS = {"slowly": 0.6, "": 1.0, "quickly": 1.5}
GAITS = {"trot": (0.5, 0.0, 0.0), "pronk": (0.0, 0.0, 0.0), "pace": (0.0, 0.0, 0.5),
         "bound": (0.0, 0.5, 0.0)}
PHRASINGS = ("train", "heldout")
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "go_to": {"train": ("go to the {color} {shape}", "walk to the {color} {shape}",
                        "move towards the {color} {shape}"),
              "heldout": ("head over to the {color} {shape}", "approach the {color} {shape}")},
    "distinguish": {"train": ("distinguish letter {letter}", "go to the box with letter {letter}"),
                    "heldout": ("find the box marked {letter}", "walk up to the letter {letter}")},
    "go_avoid": {"train": ("go to the {color} {shape} and avoid the obstacle",
                           "avoid the obstacle and go to the {color} {shape}"),
                 "heldout": ("get to the {color} {shape} without hitting the obstacle",
                             "steer around the obstacle to the {color} {shape}")},
    "go_through": {"train": ("go through the tunnel", "walk through the {color} tunnel"),
                   "heldout": ("pass through the {color} tunnel", "cross the tunnel")},
    "crawl": {"train": ("crawl under the bar", "crawl under the {color} bar"),
              "heldout": ("duck under the {color} bar", "get low and pass under the bar")},
    "unload": {"train": ("unload the ball into the {color} tray",
                         "put the ball in the {color} tray"),
               "heldout": ("drop the ball into the {color} tray",
                           "deliver the ball to the {color} tray")},
}
# go_to / go_avoid: QUART's check (stopped within 1.0 m) contains the centre line of its
# layout, so a blind straight walk passes. Here the robot must stop within 0.8 m of the target,
# closer to it than to the distractor, and facing it (like QUART's distinguish check).
GO_TO_RADIUS = 0.8  # m
GO_TO_BEARING = math.radians(20.0)  # the target within this of the heading when stopped
DISTINGUISH_RADIUS, DISTINGUISH_DY, DISTINGUISH_BEARING = 1.2, 0.2, math.radians(5.0)
PASS_GOAL_RADIUS = 0.5  # m around the stop point beyond the tunnel / gate (scene.goal_beyond)
TRAY_MARGIN = 0.10  # m: the ball must land within this of the right tray's rim
# Navigation success needs the robot to stop (or terminate) at the goal: passing by at speed
# does not count (a random walker would otherwise brush past a target 0.75 m off its path).
STOP_SPEED = 0.1  # m/s


@dataclass
class Instruction:
    text: str
    task: str
    speed: float  # m/s cruise
    gait: str
    speed_word: str = ""


def make_instruction(scene: Scene, rng: np.random.Generator,
                     phrasing: str = "train") -> Instruction:
    """A templated instruction for ``scene`` with a random speed word and gait."""
    if phrasing not in PHRASINGS:
        raise SceneError(f"unknown phrasing {phrasing!r}; choose from {PHRASINGS}")
    templates = TEMPLATES[scene.task][phrasing]
    target = scene.target_object
    text = templates[rng.integers(len(templates))].format(
        color=target.color, shape=target.kind, letter=target.letter)
    speed_word = list(SPEEDS)[rng.integers(len(SPEEDS))]
    gait = list(GAITS)[rng.integers(len(GAITS))]
    if speed_word:
        text += f" {speed_word}"
    text += f" with a {gait} gait"
    return Instruction(text, scene.task, SPEEDS[speed_word], gait, speed_word)


@dataclass
class WorldState:
    """What checkers look at after each policy step."""

    base_xy: np.ndarray  # (2,) m
    yaw: float
    pitch: float
    base_z: float
    ball_pos: np.ndarray | None = None  # (3,) unload only
    ball_landed: bool = False
    fallen: bool = False
    speed: float = 0.0  # m/s, planar speed of the trunk
    command_speed: float = 0.0  # m/s, planar speed the policy asked for
    terminated: bool = False  # the policy sent terminate this step

    @property
    def settled(self) -> bool:
        """The robot was told to stop, and did (or the episode was ended) where it is.

        (Being blocked by an object while pushing on does not count as stopping.)"""
        return self.terminated or max(self.speed, self.command_speed) < STOP_SPEED


def to_frame(scene: Scene, xy: np.ndarray) -> np.ndarray:
    """World xy -> the tunnel/gate frame (u along the passage from its entry, v across)."""
    c, s = math.cos(scene.frame_yaw), math.sin(scene.frame_yaw)
    d = np.asarray(xy, dtype=float) - np.asarray(scene.frame_pos)
    return np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1]])


def goal_point(scene: Scene) -> np.ndarray:
    """Where the robot must end up for the passage tasks (world xy)."""
    c, s = math.cos(scene.frame_yaw), math.sin(scene.frame_yaw)
    u = (TUNNEL_LENGTH if scene.task == "go_through" else 0.0) + scene.goal_beyond
    return np.asarray(scene.frame_pos) + u * np.array([c, s])


def goal_xy(scene: Scene) -> np.ndarray:
    """The point a task leads to (world xy): the passage goal or the target object."""
    if scene.task in ("go_through", "crawl"):
        return goal_point(scene)
    return np.asarray(scene.target_object.pos[:2], dtype=float)


# How close to goal_xy a task wants the robot (m); unload: where the expert releases the ball.
GOAL_RADIUS = {"go_to": GO_TO_RADIUS, "go_avoid": GO_TO_RADIUS,
               "distinguish": DISTINGUISH_RADIUS, "go_through": PASS_GOAL_RADIUS,
               "crawl": PASS_GOAL_RADIUS, "unload": GO_TO_RADIUS}


class SuccessChecker:
    """Per-episode success test (sticky) with an optional failure reason that ends it."""

    def __init__(self, scene: Scene):
        self.scene = scene
        self.success = False
        self._passed = False  # went through the tunnel / under the bar between the posts
        self._prev_uv: np.ndarray | None = None

    def update(self, world: WorldState) -> tuple[bool, str | None]:
        """(success so far, failure reason that ends the episode or None)."""
        if world.fallen:
            return self.success, "fell"
        task, target = self.scene.task, self.scene.target_object
        xy = world.base_xy
        if task in ("go_to", "go_avoid"):
            d = np.array(target.pos[:2]) - xy
            bearing = abs(math.remainder(math.atan2(d[1], d[0]) - world.yaw, math.tau))
            other = self.scene.distractor()
            closer = other is None or np.linalg.norm(d) < np.linalg.norm(
                np.array(other.pos[:2]) - xy)
            if world.settled and np.linalg.norm(d) < GO_TO_RADIUS and closer and (
                    bearing < GO_TO_BEARING):
                self.success = True
        elif task == "distinguish":
            d = np.array(target.pos[:2]) - xy
            bearing = abs(math.remainder(math.atan2(d[1], d[0]) - world.yaw, math.tau))
            if world.settled and np.linalg.norm(d) < DISTINGUISH_RADIUS and (
                    abs(d[1]) < DISTINGUISH_DY or bearing < DISTINGUISH_BEARING):
                self.success = True
        elif task in ("go_through", "crawl"):
            uv = to_frame(self.scene, xy)
            half = TUNNEL_HALF_WIDTH if task == "go_through" else 0.5
            if task == "go_through":
                inside = 0.0 <= uv[0] <= TUNNEL_LENGTH and abs(uv[1]) < half
            else:  # crossed the gate line between the posts
                prev = self._prev_uv
                inside = prev is not None and prev[0] < 0.0 <= uv[0] and abs(uv[1]) < half
            self._passed |= bool(inside)
            self._prev_uv = uv
            near = np.linalg.norm(xy - goal_point(self.scene)) < PASS_GOAL_RADIUS
            if self._passed and world.settled and near:
                self.success = True
        elif task == "unload":
            return self._check_unload(world)
        else:
            raise SceneError(f"unknown task {task!r}")
        return self.success, None

    def _check_unload(self, world: WorldState) -> tuple[bool, str | None]:
        if world.ball_pos is None:
            raise SceneError("the unload checker needs the ball position")
        if not world.ball_landed:
            return self.success, None
        for obj in self.scene.objects:
            if obj.kind != "tray":
                continue
            if np.linalg.norm(world.ball_pos[:2] - np.array(obj.pos[:2])) <= (
                    TRAY_RADIUS + TRAY_MARGIN):
                if obj.name == self.scene.target:
                    self.success = True
                    return True, None
                return self.success, "ball landed in the wrong tray"
        return self.success, "ball landed outside the trays"


def ball_on_ground(ball_pos: np.ndarray, ball_vel: np.ndarray) -> bool:
    """The ball has come to rest low (on the floor or in a tray)."""
    return bool(ball_pos[2] < 0.12 + BALL_RADIUS and np.linalg.norm(ball_vel) < 0.05)
