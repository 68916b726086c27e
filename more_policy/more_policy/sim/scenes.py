"""Procedural scenes of the six QUARD tasks: seeded layouts, colours, letters, distractors.

A :class:`Scene` is plain data (object kinds, poses, sizes, colours; the target's name), so
tasks, the expert and the success checkers read the same geometry the MJCF is built from.
The robot starts at the origin facing +x. Every task is solvable from one camera frame
(ARCHITECTURE: MoRE acts on one frame), which changes QUART's Isaac Gym layouts:

- go_to, go_avoid, distinguish, unload: QUART puts the target ~3 m ahead at y = +-0.75, so
  walking straight ~3 m succeeds blind. Here target and distractor are drawn uniformly over
  the area of a fan the camera sees at the start (bearing +-22 deg, 1.5-5 m; see ``FANS``),
  the distractor >= 0.9 m off the start->target line.
- go_through, crawl: QUART's stop point 1.0 / 1.5 m past the passage is unmarked and behind
  the camera in half the expert frames. Here a goal marker (a post of the passage's colour)
  stands ``MARKER_GAP`` beyond the stop point, which lies 1.2-3.5 m past the passage (the
  marker tells where); entry and angle of the passage spread wider than QUART's (it is
  turned 0.2-0.5 rad away from the start line), so no straight walk stops there reliably.
- unload: the D435 cannot see a tray under its nose at release, so each tray carries a flag
  of its colour just beyond its far rim, in view until the ball drops.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import cv2
import mujoco
import numpy as np

from more_policy.sim import go2_mjcf
from more_policy.vision import D435_COLOR, CameraConfig

TASKS = ("distinguish", "go_to", "go_avoid", "go_through", "crawl", "unload")
COLOR_SETS: dict[str, dict[str, tuple[float, float, float]]] = {
    "seen": {"blue": (0.1, 0.25, 0.9), "green": (0.1, 0.7, 0.2), "red": (0.85, 0.1, 0.1),
             "yellow": (0.95, 0.85, 0.1)},
    "unseen": {"gold": (0.83, 0.69, 0.22), "orange": (1.0, 0.5, 0.0),
               "pink": (1.0, 0.45, 0.7), "purple": (0.5, 0.15, 0.65)},
}
NEUTRALS = {"grey": (0.5, 0.5, 0.52), "white": (0.92, 0.92, 0.9), "black": (0.08, 0.08, 0.08),
            "brown": (0.4, 0.26, 0.13)}
LETTERS = "abcdef"
SHAPES = ("ball", "box", "cylinder")
OBJECT_SIZE = 0.15  # half size of targets [m]
LETTER_BOX_SIZE = 0.2  # half size of the letter boxes: the glyph is ~25 px tall from 3 m
OBSTACLE_SIZE = (0.15, 0.3, 0.125)  # half sizes: low, so the target stays visible over it
TUNNEL_LENGTH, TUNNEL_HALF_WIDTH, TUNNEL_HEIGHT = 1.0, 0.4, 0.6
GATE_HALF_WIDTH, BAR_RADIUS = 0.5, 0.02
BAR_BOTTOM_RANGE = (0.315, 0.345)  # the standing Go2 (top ~0.36 m) must crouch; crouched ~0.30
TRAY_RADIUS, TRAY_HEIGHT = 0.15, 0.05
FLAG_HEIGHT, FLAG_RADIUS, FLAG_PANEL = 0.6, 0.015, (0.01, 0.1, 0.07)  # m; panel half sizes
# from the tray centre: past the zone where a landing ball counts (tasks.TRAY_MARGIN beyond
# the rim), so the pole never deflects a ball that would have scored
FLAG_DISTANCE = 0.3
# Where target and distractor stand: (min, max) range [m] at +-FAN_HALF_ANGLE from the start
# heading, drawn uniformly over the area (no spot is likelier than another for a blind walk).
FAN_HALF_ANGLE = math.radians(22.0)  # inside the colour stream's +-27.4 deg at the start
FANS = {"go_to": (1.5, 5.0), "distinguish": (1.5, 4.5), "go_avoid": (3.0, 5.5),
        "unload": (1.8, 4.5)}
DISTRACTOR_OFF_LINE, DISTRACTOR_GAP = 0.9, 1.2  # m from the start->target line / the target
# Passages: entry distance, lateral offset and yaw of the tunnel / gate; stop point past it.
# (The passage is never square to the start heading: a straight blind walk misses the stop.)
PASSAGE_ENTRY_X, PASSAGE_ENTRY_Y, PASSAGE_YAW = (2.2, 3.4), 0.9, (0.2, 0.5)  # m, m, |rad|
PASSAGE_GOAL_BEYOND = (1.2, 3.5)  # m from the tunnel exit / the gate line to the stop point
MARKER_GAP = 0.9  # m from the stop point on to the goal marker (in view when stopped there)
MARKER_RADIUS, MARKER_HEIGHT = 0.06, 0.5
BALL_RADIUS = 0.03
# m: where the ball rides on the trunk's back (trunk frame, forward +). Released, the ball
# rolls to the front edge and drifts sideways on the way (0.1 m std at the landing point from
# 0.05 m behind the centre, one landing in 16 outside the tray); from 0.08 m ahead it rolls a
# third as far (0.07 m std, none of 56 outside, physics mode).
BALL_HOLDER_X = 0.08
LETTER_TEXTURE_SIZE = 64


class SceneError(ValueError):
    """Impossible scene parameters (unknown task or colour set, bad sizes)."""


@dataclass
class SceneObject:
    """One static object; ``pos`` is its centre, ``yaw`` about z, ``size`` MuJoCo half sizes."""

    name: str
    kind: str  # ball|box|cylinder|letter_box|obstacle|wall|roof|post|bar|marker|tray|flag|clutter_*
    pos: tuple[float, float, float]
    size: tuple[float, ...]
    color: str = ""
    rgba: tuple[float, float, float, float] = (0.5, 0.5, 0.5, 1.0)
    yaw: float = 0.0
    letter: str = ""


@dataclass
class Scene:
    """A sampled task layout. ``target`` names the object the instruction refers to."""

    task: str
    objects: list[SceneObject]
    target: str
    colors: str = "seen"
    # task geometry used by checkers and the expert (gate/tunnel frame, trays, goal)
    frame_pos: tuple[float, float] = (0.0, 0.0)  # entry of tunnel / gate centre
    frame_yaw: float = 0.0
    goal_beyond: float = 0.0  # passages: stop point this far past the tunnel exit / gate line
    start_yaw: float = 0.0
    extras: dict = field(default_factory=dict)

    def object(self, name: str) -> SceneObject:
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(f"scene has no object {name!r}")

    @property
    def target_object(self) -> SceneObject:
        return self.object(self.target)

    def distractor(self) -> SceneObject | None:
        for obj in self.objects:
            if obj.name == "distractor":
                return obj
        return None


def _rgba(rgb) -> tuple[float, float, float, float]:
    return (*map(float, rgb), 1.0)


def _pick_colors(rng: np.random.Generator, colors: str, n: int) -> list[str]:
    if colors not in COLOR_SETS:
        raise SceneError(f"unknown colour set {colors!r}; choose from {sorted(COLOR_SETS)}")
    names = sorted(COLOR_SETS[colors])
    return [names[i] for i in rng.choice(len(names), size=n, replace=False)]


def _fan_point(rng: np.random.Generator, task: str) -> np.ndarray:
    """A point of ``task``'s fan (see :data:`FANS`), uniform over its area."""
    r0, r1 = FANS[task]
    r = math.sqrt(rng.uniform(r0**2, r1**2))
    bearing = rng.uniform(-FAN_HALF_ANGLE, FAN_HALF_ANGLE)
    return r * np.array([math.cos(bearing), math.sin(bearing)])


def _target_and_distractor(rng: np.random.Generator, task: str
                           ) -> tuple[tuple[float, float], tuple[float, float]]:
    """(x, y) of the target and of the distractor, both in view at the start; the distractor
    clear of the straight path (and, for go_avoid, of the detour on the far side)."""
    target = _fan_point(rng, task)
    direction = target / np.linalg.norm(target)
    for _ in range(1000):
        other = _fan_point(rng, task)
        off_line = abs(direction[0] * other[1] - direction[1] * other[0])
        if off_line >= DISTRACTOR_OFF_LINE and np.linalg.norm(other - target) >= DISTRACTOR_GAP:
            return tuple(map(float, target)), tuple(map(float, other))
    raise SceneError(f"no distractor position for {task} (fan {FANS[task]})")


def _shape_object(name: str, shape: str, xy, color: str, colors: str) -> SceneObject:
    s = OBJECT_SIZE
    size = {"ball": (s,), "box": (s, s, s), "cylinder": (s, 0.2)}[shape]
    z = 0.2 if shape == "cylinder" else s
    return SceneObject(name, shape, (xy[0], xy[1], z), size, color,
                       _rgba(COLOR_SETS[colors][color]))


def sample_scene(task: str, rng: np.random.Generator, colors: str = "seen") -> Scene:
    """A random layout of ``task`` (see :data:`TASKS`) using colour set ``colors``.

    Besides the task's objects, 0-2 neutral clutter objects stand well off to the sides.
    """
    if task not in TASKS:
        raise SceneError(f"unknown task {task!r}; choose from {TASKS}")
    if colors not in COLOR_SETS:
        raise SceneError(f"unknown colour set {colors!r}; choose from {sorted(COLOR_SETS)}")
    scene = _task_layout(task, rng, colors)
    for k in range(rng.integers(0, 3)):
        name = list(NEUTRALS)[rng.integers(len(NEUTRALS))]
        x, y = rng.uniform(2.5, 6.0), rng.choice([-1.0, 1.0]) * rng.uniform(2.6, 3.4)
        if rng.random() < 0.5:
            h = rng.uniform(0.1, 0.3)
            obj = SceneObject(f"clutter_{k}", "clutter_box", (x, y, h), (0.15, 0.15, h), name,
                              _rgba(NEUTRALS[name]), float(rng.uniform(0, np.pi)))
        else:
            obj = SceneObject(f"clutter_{k}", "clutter_cylinder", (x, y, 0.25), (0.12, 0.25),
                              name, _rgba(NEUTRALS[name]))
        scene.objects.append(obj)
    return scene


def _task_layout(task: str, rng: np.random.Generator, colors: str) -> Scene:
    start_yaw = float(rng.uniform(-0.05, 0.05))
    if task in ("go_to", "go_avoid"):
        t_xy, d_xy = _target_and_distractor(rng, task)
        shape = SHAPES[rng.integers(len(SHAPES))]
        c_target, c_other = _pick_colors(rng, colors, 2)
        objects = [_shape_object("target", shape, t_xy, c_target, colors),
                   _shape_object("distractor", shape, d_xy, c_other, colors)]
        scene = Scene(task, objects, "target", colors, start_yaw=start_yaw)
        if task == "go_avoid":  # obstacle 1.5 m before the target on the start->target line
            direction = np.array(t_xy) / np.linalg.norm(t_xy)
            centre = np.array(t_xy) - 1.5 * direction
            yaw = float(np.arctan2(direction[1], direction[0]))
            # low (0.25 m) so the target stays visible over it; the legs still hit it
            objects.append(SceneObject("obstacle", "obstacle", (*centre, OBSTACLE_SIZE[2]),
                                       OBSTACLE_SIZE, "", (0.45, 0.3, 0.2, 1.0), yaw))
        return scene
    if task == "distinguish":
        t_xy, d_xy = _target_and_distractor(rng, task)
        letter, other = (str(c) for c in rng.choice(list(LETTERS), size=2, replace=False))
        s = LETTER_BOX_SIZE
        objects = [SceneObject("target", "letter_box", (*t_xy, s), (s, s, s), letter=letter,
                               rgba=(1, 1, 1, 1)),
                   SceneObject("distractor", "letter_box", (*d_xy, s), (s, s, s),
                               letter=other, rgba=(1, 1, 1, 1))]
        return Scene(task, objects, "target", colors, start_yaw=start_yaw)
    if task in ("go_through", "crawl"):
        (color,) = _pick_colors(rng, colors, 1)
        rgba = _rgba(COLOR_SETS[colors][color])
        entry = (float(rng.uniform(*PASSAGE_ENTRY_X)),
                 float(rng.uniform(-PASSAGE_ENTRY_Y, PASSAGE_ENTRY_Y)))
        # turned away from the start line (an S-curve into it would hide it from the camera)
        side = np.sign(entry[1]) or 1.0
        yaw = float(side * rng.uniform(*PASSAGE_YAW))
        beyond = float(rng.uniform(*PASSAGE_GOAL_BEYOND))
        rot = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])

        def at(u: float, v: float) -> tuple[float, float]:  # tunnel/gate frame -> world
            return tuple(np.array(entry) + rot @ np.array([u, v]))

        if task == "go_through":
            h, w, t = TUNNEL_HEIGHT, TUNNEL_HALF_WIDTH, 0.025
            objects = [SceneObject(f"wall_{k}", "wall", (*at(TUNNEL_LENGTH / 2, s * (w + t)),
                                                         h / 2),
                                   (TUNNEL_LENGTH / 2, t, h / 2), color, rgba, yaw)
                       for k, s in (("left", 1), ("right", -1))]
            objects.append(SceneObject("target", "roof", (*at(TUNNEL_LENGTH / 2, 0), h + t),
                                       (TUNNEL_LENGTH / 2, w + 2 * t, t), color, rgba, yaw))
        else:
            bottom = float(rng.uniform(*BAR_BOTTOM_RANGE))
            post_h = bottom + 2 * BAR_RADIUS + 0.05
            objects = [SceneObject(f"post_{k}", "post", (*at(0, s * GATE_HALF_WIDTH), post_h / 2),
                                   (0.03, post_h / 2), color, rgba, yaw)
                       for k, s in (("left", 1), ("right", -1))]
            objects.append(SceneObject("target", "bar", (*at(0, 0), bottom + BAR_RADIUS),
                                       (BAR_RADIUS, GATE_HALF_WIDTH), color, rgba, yaw))
        exit_u = TUNNEL_LENGTH if task == "go_through" else 0.0
        objects.append(SceneObject("goal_marker", "marker",
                                   (*at(exit_u + beyond + MARKER_GAP, 0), MARKER_HEIGHT / 2),
                                   (MARKER_RADIUS, MARKER_HEIGHT / 2), color, rgba))
        return Scene(task, objects, "target", colors, frame_pos=entry, frame_yaw=yaw,
                     goal_beyond=beyond, start_yaw=start_yaw)
    # unload: two trays of different colours, each with a flag beyond its far rim; the ball rides
    # on the robot's back
    t_xy, d_xy = _target_and_distractor(rng, task)
    c_target, c_other = _pick_colors(rng, colors, 2)
    objects = []
    for name, xy, c in (("target", t_xy, c_target), ("distractor", d_xy, c_other)):
        rgba = _rgba(COLOR_SETS[colors][c])
        objects.append(SceneObject(name, "tray", (*xy, TRAY_HEIGHT / 2),
                                   (TRAY_RADIUS, TRAY_HEIGHT / 2), c, rgba))
        away = np.array(xy) / np.linalg.norm(xy)  # the far rim seen from the start
        pole = np.array(xy) + FLAG_DISTANCE * away
        yaw = float(math.atan2(away[1], away[0]))
        objects.append(SceneObject(f"{name}_flag", "flag", (*pole, FLAG_HEIGHT / 2),
                                   (FLAG_RADIUS, FLAG_HEIGHT / 2), c, rgba, yaw))
    return Scene(task, objects, "target", colors, start_yaw=start_yaw)


# -- MJCF ---------------------------------------------------------------------------------
def _geom_xml(obj: SceneObject) -> str:
    pos = " ".join(f"{v:.4f}" for v in obj.pos)
    size = " ".join(f"{v:.4f}" for v in obj.size)
    rgba = " ".join(f"{v:.3f}" for v in obj.rgba)
    euler = f'euler="0 0 {obj.yaw:.4f}"'
    common = f'name="{obj.name}" pos="{pos}" contype="1" conaffinity="3"'
    if obj.kind == "letter_box":
        return f'<geom {common} type="box" size="{size}" material="letter_{obj.letter}"/>'
    if obj.kind == "bar":  # a horizontal cylinder across the gate (along the frame's y)
        return (f'<geom {common} type="cylinder" size="{size}" rgba="{rgba}" '
                f'euler="1.5708 0 {obj.yaw:.4f}"/>')
    if obj.kind == "flag":  # a pole with a panel on top facing the start
        x, y, _ = obj.pos
        px, py, pz = FLAG_PANEL
        panel = (f'<geom name="{obj.name}_panel" type="box" pos="{x:.4f} {y:.4f} '
                 f'{FLAG_HEIGHT - pz:.4f}" size="{px} {py} {pz}" rgba="{rgba}" {euler} '
                 f'contype="1" conaffinity="3"/>')
        return f'<geom {common} type="cylinder" size="{size}" rgba="{rgba}"/>{panel}'
    if obj.kind == "tray":  # a low dish: base plus a darker rim ring of four boxes
        r, h = obj.size
        rim = " ".join(f"{v:.3f}" for v in (*(np.array(obj.rgba[:3]) * 0.6), 1.0))
        x, y, z = obj.pos
        rims = "".join(  # 4 cm walls: they catch a ball rolling in
            f'<geom name="{obj.name}_rim{k}" type="box" pos="{x + dx:.4f} {y + dy:.4f} '
            f'{z + h + 0.02:.4f}" size="{sx:.3f} {sy:.3f} 0.02" rgba="{rim}" contype="1" '
            f'conaffinity="3"/>'
            for k, (dx, dy, sx, sy) in enumerate(((r, 0, 0.012, r), (-r, 0, 0.012, r),
                                                  (0, r, r, 0.012), (0, -r, r, 0.012))))
        return f'<geom {common} type="cylinder" size="{size}" rgba="{rgba}"/>{rims}'
    geom_type = {"ball": "sphere", "box": "box", "cylinder": "cylinder", "obstacle": "box",
                 "wall": "box", "roof": "box", "post": "cylinder", "marker": "cylinder",
                 "clutter_box": "box",
                 "clutter_cylinder": "cylinder"}[obj.kind]
    return f'<geom {common} type="{geom_type}" size="{size}" rgba="{rgba}" {euler}/>'


def scene_mjcf(scene: Scene, with_ball: bool | None = None,
               camera: CameraConfig = D435_COLOR) -> str:
    """The full MJCF (Go2 with ``camera`` + scene objects [+ the unload ball as a free body])."""
    # every scene carries all letter textures so pooled renderers fit every model
    n = LETTER_TEXTURE_SIZE
    assets = "".join(
        f'<texture name="letter_tex_{c}" type="cube" builtin="flat" width="{n}" height="{n}" '
        f'rgb1="1 1 1"/><material name="letter_{c}" texture="letter_tex_{c}"/>'
        for c in LETTERS)
    bodies = "\n".join(f"    {_geom_xml(o)}" for o in scene.objects)
    extra = ""
    if with_ball if with_ball is not None else scene.task == "unload":
        z = go2_mjcf.default_base_height() + 0.057 + BALL_RADIUS + 0.002
        bodies += (f'\n    <body name="ball" pos="{BALL_HOLDER_X} 0 {z:.4f}">'
                   f'<freejoint name="ball"/>'
                   f'<geom name="ball" type="sphere" size="{BALL_RADIUS}" mass="0.05" '
                   f'rgba="0.95 0.95 0.95 1" contype="1" conaffinity="3" condim="6" '
                   f'friction="1.0 0.01 0.002"/></body>')
        # the ball holder on the back: released when the trunk tilts (physics mode)
        extra = ('\n  <equality><weld name="ball_holder" body1="ball" body2="trunk"/>'
                 '</equality>')
    return go2_mjcf.build_mjcf(worldbody=bodies, assets=assets, name=f"go2_{scene.task}",
                               extra=extra, camera=camera)


@functools.cache
def letter_image(letter: str, size: int = LETTER_TEXTURE_SIZE) -> np.ndarray:
    """A white square with a black lowercase letter, uint8 (size, size, 3)."""
    img = np.full((size, size, 3), 255, np.uint8)
    scale = size / 36.0
    (w, h), _ = cv2.getTextSize(letter, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.putText(img, letter, ((size - w) // 2, (size + h) // 2), cv2.FONT_HERSHEY_SIMPLEX,
                scale, (0, 0, 0), max(2, size // 14), cv2.LINE_AA)
    return img


def load_scene_model(scene: Scene, with_ball: bool | None = None,
                     camera: CameraConfig = D435_COLOR) -> mujoco.MjModel:
    """Compile the scene and paint the letter textures (drawn here, no image files)."""
    model = mujoco.MjModel.from_xml_string(scene_mjcf(scene, with_ball, camera))
    for letter in LETTERS:
        tex = model.texture(f"letter_tex_{letter}")
        face = np.rot90(letter_image(letter, int(tex.width[0])), k=-1)  # upright on -x
        start = int(tex.adr[0])
        data = np.concatenate([face] * 6).ravel()
        model.tex_data[start:start + data.size] = data
    return model
