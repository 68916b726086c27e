"""Question-answer pairs about a rendered scene, computed from the scene data and the camera.

Every task object is projected through the front camera; only objects whose centre is in view
are asked about by name. The families (``FAMILIES``) teach what a vision-language backbone
must know to follow our instructions: colour, shape and letter of objects, where an object is
(left / ahead / right, near / medium / far, and the image column of an instruction's goal),
whether a tunnel / bar / obstacle / tray is ahead, and a caption listing objects left to right.
No question mentions an action or a command: the backbone learns vision and language only.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from more_policy.sim import go2_mjcf
from more_policy.sim.scenes import COLOR_SETS, LETTERS, NEUTRALS, SHAPES, Scene
from more_policy.vision import CAMERA_ASPECT

FAMILIES = ("colour", "shape", "letter", "side", "distance", "presence", "caption", "goal")
SIDES = ("left", "ahead", "right")
DISTANCES = ("near", "medium", "far")  # < 1.5 m, < 3 m, beyond (horizontal, from the camera)
# Two phrasings, one shaped like MoRE's prompt, so its begin-answer state learns to hold the goal.
GOAL_QUESTIONS = ("where is the goal of: {instruction}?",
                  "where should the legged robot look to {instruction}?")
GOAL_COLUMNS = 10  # the 'goal' family answers the image tenth (0 = left edge) of the goal
NAMED_KINDS = {"ball": "ball", "box": "box", "cylinder": "cylinder", "letter_box": "box",
               "obstacle": "obstacle", "roof": "tunnel", "bar": "bar", "tray": "tray",
               "marker": "marker", "flag": "flag", "clutter_box": "box",
               "clutter_cylinder": "cylinder"}
PRESENCE_THINGS = ("tunnel", "bar", "marker", "obstacle", "tray", "letter")
IN_VIEW = 0.95  # |normalised image coordinate| of an object centre counted as visible
VERTICAL_SLACK = 1.6  # |normalised row| of a centre whose object still shows in the frame
AHEAD_HALF_WIDTH = 0.1  # image x in [0.5 - w, 0.5 + w] is 'ahead'


@dataclass(frozen=True)
class ObjectView:
    """A named scene object as the camera sees it."""

    name: str  # scene object name
    noun: str  # tunnel, bar, ball, ...
    color: str  # '' for letter boxes and the obstacle
    letter: str
    x: float  # image column of the centre, 0 = left edge, 1 = right edge
    y: float  # image row, 0 = top
    distance: float  # m, horizontal, camera to centre
    visible: bool

    @property
    def description(self) -> str:
        if self.letter:
            return f"box with letter {self.letter}"
        return f"{self.color} {self.noun}".strip()

    @property
    def side(self) -> str:
        if self.x < 0.5 - AHEAD_HALF_WIDTH:
            return "left"
        return "right" if self.x > 0.5 + AHEAD_HALF_WIDTH else "ahead"

    @property
    def range_word(self) -> str:
        return DISTANCES[int(np.searchsorted([1.5, 3.0], self.distance))]


def project(model: mujoco.MjModel, data: mujoco.MjData, point,
            aspect: float = CAMERA_ASPECT):
    """World point -> (x, y, depth) in the model frame (the camera's whole 4:3 view squashed
    square, :func:`more_policy.vision.to_model_frame`): x, y in [0, 1] when in view."""
    cam = model.camera(go2_mjcf.CAMERA_NAME).id
    rel = data.cam_xmat[cam].reshape(3, 3).T @ (np.asarray(point, float) - data.cam_xpos[cam])
    depth = -rel[2]  # MuJoCo cameras look along -z
    tan_y = np.tan(np.radians(model.cam_fovy[cam]) / 2)
    if depth <= 1e-6:
        return 2.0, 2.0, depth
    u = rel[0] / depth / (tan_y * aspect)
    v = rel[1] / depth / tan_y
    return (u + 1) / 2, (1 - v) / 2, depth


def object_views(scene: Scene, model: mujoco.MjModel, data: mujoco.MjData,
                 aspect: float = CAMERA_ASPECT) -> list[ObjectView]:
    """The nameable objects (walls and posts are parts of the tunnel and the gate)."""
    mujoco.mj_camlight(model, data)  # camera poses are not updated by mj_kinematics
    cam = model.camera(go2_mjcf.CAMERA_NAME).id
    views = []
    for obj in scene.objects:
        if obj.kind not in NAMED_KINDS:
            continue
        x, y, depth = project(model, data, obj.pos, aspect)
        # a tall or near object is in view though its centre is above or below the frame
        visible = depth > 0.3 and abs(2 * x - 1) < IN_VIEW and abs(2 * y - 1) < VERTICAL_SLACK
        distance = float(np.linalg.norm(np.asarray(obj.pos[:2]) - data.cam_xpos[cam][:2]))
        views.append(ObjectView(obj.name, NAMED_KINDS[obj.kind], obj.color, obj.letter,
                                float(x), float(y), distance, bool(visible)))
    return views


def _unique(views: list[ObjectView], key) -> dict:
    """key(view) -> view, for keys that pick out exactly one visible object."""
    groups: dict = {}
    for view in views:
        groups.setdefault(key(view), []).append(view)
    return {k: v[0] for k, v in groups.items() if len(v) == 1}


def questions(views: list[ObjectView], goal: ObjectView | None,
              instruction: str) -> list[tuple[str, str, str]]:
    """All (family, question, answer) triples for one frame.

    ``goal`` is the view of the object the instruction leads to (None: not nameable).
    """
    seen = [v for v in views if v.visible]
    qa: list[tuple[str, str, str]] = []
    by_side_noun = _unique(seen, lambda v: (v.side, v.noun))
    for (side, noun), view in by_side_noun.items():
        where = "in front" if side == "ahead" else f"on the {side}"
        if view.color and not view.letter:
            qa.append(("colour", f"what colour is the {noun} {where}?", view.color))
        if view.letter:
            qa.append(("letter", f"which letter is on the box {where}?", view.letter))
    for view in _unique(seen, lambda v: v.noun).values():
        if view.color and not view.letter:
            qa.append(("colour", f"what colour is the {view.noun}?", view.color))
    for view in _unique([v for v in seen if v.noun in SHAPES and v.color],
                        lambda v: v.color).values():
        qa.append(("shape", f"what shape is the {view.color} object?", view.noun))
    for desc, view in _unique(seen, lambda v: v.description).items():
        qa.append(("side", f"where is the {desc}?", view.side))
        qa.append(("distance", f"how far is the {desc}?", view.range_word))
    for thing in PRESENCE_THINGS:
        present = any((v.letter if thing == "letter" else v.noun == thing) and v.side == "ahead"
                      for v in seen)
        noun = "box with a letter" if thing == "letter" else thing
        qa.append(("presence", f"is there a {noun} ahead?", "yes" if present else "no"))
    ordered = sorted(seen, key=lambda v: v.x)
    caption = ", ".join(v.description for v in ordered) or "nothing"
    qa.append(("caption", "list the objects from left to right.", caption))
    if goal is not None:
        column = (str(min(GOAL_COLUMNS - 1, int(goal.x * GOAL_COLUMNS))) if goal.visible
                  else "none")
        for template in GOAL_QUESTIONS:
            qa.append(("goal", template.format(instruction=instruction), column))
    return qa


def corpus() -> list[str]:
    """Every word a question or answer can use, for the tokenizer."""
    colours = [c for s in COLOR_SETS.values() for c in s] + list(NEUTRALS)
    nouns = sorted(set(NAMED_KINDS.values()))
    words = [f"what colour is the {n} on the left? in front right {c}" for n in nouns
             for c in colours]
    words += [f"which letter is on the box with letter {letter}? box with a letter"
              for letter in LETTERS]
    words += [f"what shape is the {c} object? where is the {c} {n}? how far is the {c} {n}?"
              for c in colours for n in nouns]
    words += [f"is there a {t} ahead? yes no" for t in PRESENCE_THINGS]
    words += ["list the objects from left to right. nothing", "where is the goal of: none",
              "where should the legged robot look to",
              "What action should the legged robot take to",
              " ".join(SIDES + DISTANCES), " ".join(str(i) for i in range(GOAL_COLUMNS))]
    return words
