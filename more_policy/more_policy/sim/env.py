"""One task environment, two fidelity modes behind the same interface.

    env = make_env("go_to", seed=0, mode="command")        # or mode="physics", controller=...
    obs = env.reset(seed=3)                                  # Observation(image, instruction, ...)
    obs, success, done, info = env.step(command)             # (12,) SI command, 5 Hz

command mode: the trunk follows the command kinematically (velocities through a first-order
lag, body height and pitch applied, legs placed by inverse kinematics under the hips). A contact
of a robot geom with a scene object (obstacle, tunnel wall, crawl bar, tray) stops the robot
and fails the episode. Fast: data generation and VLA evaluation.
physics mode: a :class:`~more_policy.robot.go2.LowLevelController` (e.g. the analytic gait
controller in ``more_policy.control``) turns the command into motor commands at its
``control_dt``; the Go2's PD law runs at every physics step. Without a controller, ``step``
is refused and something else drives ``env.physics`` (go2_sim_node's DDS bridge).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import mujoco
import numpy as np

from more_policy.actions import ActionSpace, ActionSpaceError
from more_policy.control.kinematics import inverse_kinematics
from more_policy.robot import go2
from more_policy.sim import go2_mjcf, scenes, tasks
from more_policy.sim.physics import Go2Physics, quat_yaw_pitch, yaw_pitch_quat
from more_policy.vision import D435_COLOR, CameraConfig, to_model_frame

MODES = ("command", "physics")
NOMINAL_HEIGHT = 0.30  # m: trunk height for body_height = 0 in command mode
VELOCITY_LAG, POSTURE_LAG = 0.25, 0.15  # s, first-order time constants in command mode
KINEMATIC_DT = 0.02  # s, command-mode integration and collision step
BALL_RELEASE_PITCH = 0.3  # rad: tilting further releases the ball holder on the back
BALL_DROP_FRONT, BALL_DROP_BACK = 0.42, 0.30  # m from the trunk centre where it lands
BALL_FLIGHT_TIME = 0.25  # s: the ball keeps the trunk's velocity while it falls
FOOT_STANCE_Y = go2.HIP_OFFSET_Y + go2.HIP_TO_THIGH_Y


@dataclass
class Observation:
    image: np.ndarray  # (H, W, 3) uint8 model frame of the front camera (vision.to_model_frame)
    instruction: str
    task: str
    step: int
    base_pose: np.ndarray = field(default_factory=lambda: np.zeros(5))  # x, y, z, yaw, pitch


def make_env(task: str, seed: int = 0, mode: str = "command",
             image_size: tuple[int, int] = (240, 240),
             controller: go2.LowLevelController | None = None, **kwargs) -> Go2TaskEnv:
    """The environment of ``task`` (one of :data:`scenes.TASKS`)."""
    return Go2TaskEnv(task, seed=seed, mode=mode, image_size=image_size, controller=controller,
                      **kwargs)


def stance_joint_pos(height: float, pitch: float) -> np.ndarray:
    """Joint angles (12,) with the feet on flat ground under the hips for a trunk pose."""
    # cached on a 0.1 mm / 0.1 mrad grid: postures repeat for most of an episode
    return _stance_joint_pos(round(height, 4), round(pitch, 4)).copy()


@functools.lru_cache(maxsize=4096)
def _stance_joint_pos(height: float, pitch: float) -> np.ndarray:
    c, s = math.cos(pitch), math.sin(pitch)
    rot_t = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])  # world (yaw-free) -> trunk
    feet_world = np.stack([go2.LEG_FRONT * go2.HIP_OFFSET_X * c, go2.LEG_SIDE * FOOT_STANCE_Y,
                           np.full(4, go2.FOOT_RADIUS - height)], 1)
    # out of reach (tall and pitched): a straight leg towards the foot, then the joint limits
    q = inverse_kinematics(feet_world @ rot_t.T, max_extension=1.0)
    return np.clip(q, go2.JOINT_LOWER, go2.JOINT_UPPER)


class Go2TaskEnv:
    """A seeded task episode: scene, instruction, robot, success checker, camera."""

    def __init__(self, task: str, seed: int = 0, mode: str = "command",
                 image_size: tuple[int, int] = (240, 240),
                 controller: go2.LowLevelController | None = None, colors: str = "seen",
                 phrasing: str = "train", policy_hz: float = 5.0, max_steps: int = 100,
                 action_space: ActionSpace | None = None, render: bool = True,
                 camera: CameraConfig = D435_COLOR):
        if task not in scenes.TASKS:
            raise scenes.SceneError(f"unknown task {task!r}; choose from {scenes.TASKS}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")
        if len(image_size) != 2 or min(image_size) < 1:
            raise ValueError(f"image_size must be (height, width) >= 1, got {image_size}")
        if not (policy_hz > 0 and max_steps >= 1):
            raise ValueError(f"need policy_hz > 0 and max_steps >= 1, got {policy_hz}, "
                             f"{max_steps}")
        if colors not in scenes.COLOR_SETS:
            raise scenes.SceneError(f"unknown colour set {colors!r}")
        if phrasing not in tasks.PHRASINGS:
            raise scenes.SceneError(f"unknown phrasing {phrasing!r}")
        self.task, self.mode, self.controller = task, mode, controller
        self.image_size = tuple(int(v) for v in image_size)
        self.colors, self.phrasing = colors, phrasing
        self.policy_dt, self.max_steps = 1.0 / policy_hz, int(max_steps)
        self.action_space = action_space or ActionSpace()
        # command dimensions command mode follows, looked up once (read every 20 ms)
        self._velocity_dims = self.action_space.indices("vel_x", "vel_y", "yaw_rate")
        self._posture_dims = self.action_space.indices("body_height", "body_pitch")
        self.render_observations = render  # False: observations carry an empty image
        self.camera = camera
        self._seeds = np.random.SeedSequence(seed)
        self.physics: Go2Physics | None = None
        self.scene: scenes.Scene | None = None
        self.instruction: tasks.Instruction | None = None
        self._done = True

    # -- episode ---------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Observation:
        """Sample a new scene and instruction (from ``seed`` when given) and stand the robot."""
        rng = np.random.default_rng(seed if seed is not None else self._seeds.spawn(1)[0])
        self.scene = scenes.sample_scene(self.task, rng, self.colors)
        self.instruction = tasks.make_instruction(self.scene, rng, self.phrasing)
        if self.physics is not None:
            self.physics.close()
        self.physics = Go2Physics(scenes.load_scene_model(self.scene, camera=self.camera))
        m = self.physics.model
        robot_root = m.body(go2_mjcf.TRUNK_BODY).id
        floor = m.geom("floor").id
        self._robot_geoms = {g for g in range(m.ngeom) if m.body_rootid[m.geom_bodyid[g]]
                             == robot_root}
        self._ball = m.body("ball").id if self.task == "unload" else None
        ball_geom = m.geom("ball").id if self._ball is not None else -1
        self._blocking = {g for g in range(m.ngeom) if m.geom_contype[g] == 1
                          and g not in (floor, ball_geom) and g not in self._robot_geoms}
        # command-mode state: pose, lagged body velocities, lagged posture
        self._xy, self._yaw = np.zeros(2), self.scene.start_yaw
        self._vel, self._yaw_rate = np.zeros(2), 0.0
        self._height, self._pitch = 0.0, 0.0
        self._ball_held, self._ball_landed = self._ball is not None, False
        self.checker = tasks.SuccessChecker(self.scene)
        self.steps, self.success, self._done = 0, False, False
        if self.mode == "command":
            self._pose_robot()
            if self._touched_object():
                raise scenes.SceneError(f"scene {self.task} (seed {seed}) starts in contact")
        else:
            self.physics.reset(yaw=self.scene.start_yaw)
            if self._ball is not None:
                self._place_ball_on_back()
                self.physics.data.eq_active[self.physics.model.equality("ball_holder").id] = 1
            if self.controller is not None:
                self.controller.reset(self.physics.state())
        return self._observation()

    def step(self, command) -> tuple[Observation, bool, bool, dict]:
        """Apply a 12-d SI command for one policy period; (obs, success, done, info)."""
        if self.physics is None or self._done:
            raise RuntimeError("the episode is over (or never started): call reset()")
        if self.mode == "physics" and self.controller is None:
            raise RuntimeError("physics-mode step() needs a LowLevelController "
                               "(more_policy.control); without one, drive env.physics directly")
        command = np.asarray(command, dtype=float)
        if command.shape != (12,):
            raise ValueError(f"command must have shape (12,), got {command.shape}")
        try:
            command = self.action_space.clip(command)
        except ActionSpaceError as e:
            raise ValueError(f"bad command: {e}") from None
        touched = None
        if self.mode == "command":
            for _ in range(max(1, round(self.policy_dt / KINEMATIC_DT))):
                touched = self._kinematic_step(command, KINEMATIC_DT)
                if touched:
                    break
        else:
            touched = self._physics_step(command)
        self.steps += 1
        terminated = bool(self.action_space.is_terminate(command))
        if terminated and self.mode == "physics" and self._ball is not None:
            self._settle_ball(command)
        world = self.world_state()
        world.terminated = terminated
        world.command_speed = float(np.linalg.norm(command[self._velocity_dims[:2]]))
        self.success, failure = self.checker.update(world)
        if touched and not self.success:
            failure = f"collided with {touched}"
        self._done = terminated or failure is not None or self.steps >= self.max_steps
        info = {"step": self.steps, "collided": touched is not None, "failure": failure,
                "terminated": terminated,
                "timeout": self.steps >= self.max_steps and not terminated}
        return self._observation(), self.success, self._done, info

    # -- command mode ----------------------------------------------------------------------
    def _kinematic_step(self, command: np.ndarray, dt: float) -> str | None:
        """Integrate the lagged command for ``dt``; the name of a touched object, if any."""
        a_v, a_p = dt / VELOCITY_LAG, dt / POSTURE_LAG
        vel_x, vel_y, yaw_rate = command[self._velocity_dims]
        height, pitch = command[self._posture_dims]
        self._vel += a_v * (np.array([vel_x, vel_y]) - self._vel)
        self._yaw_rate += a_v * (yaw_rate - self._yaw_rate)
        self._height += a_p * (height - self._height)
        self._pitch += a_p * (pitch - self._pitch)
        prev = self._xy.copy(), self._yaw
        c, s = math.cos(self._yaw), math.sin(self._yaw)
        self._xy = self._xy + dt * np.array([c * self._vel[0] - s * self._vel[1],
                                             s * self._vel[0] + c * self._vel[1]])
        self._yaw = math.remainder(self._yaw + dt * self._yaw_rate, math.tau)
        self._pose_robot()
        touched = self._touched_object()
        if touched:  # the robot stops where it touched (the episode fails)
            self._xy, self._yaw = prev
            self._vel[:], self._yaw_rate = 0.0, 0.0
            self._pose_robot()
        self._update_ball_kinematic()
        return touched

    def place_robot(self, xy, yaw: float) -> str | None:
        """Teleport the standing robot (command mode; for still frames at arbitrary poses);
        the name of an object it now touches, if any."""
        if self.mode != "command" or self.physics is None:
            raise RuntimeError("place_robot needs a reset command-mode env")
        self._xy, self._yaw = np.asarray(xy, dtype=float).copy(), float(yaw)
        self._pose_robot()
        return self._touched_object()

    def _pose_robot(self) -> None:
        """Write the command-mode pose into MuJoCo (kinematics only)."""
        p, m, d = self.physics, self.physics.model, self.physics.data
        z = NOMINAL_HEIGHT + self._height
        p.set_base_pose(np.array([*self._xy, z]), yaw_pitch_quat(self._yaw, self._pitch))
        p.set_joint_pos(stance_joint_pos(z, self._pitch))
        if self._ball_held:
            self._place_ball_on_back()
        mujoco.mj_kinematics(m, d)

    def _touched_object(self, detect: bool = True) -> str | None:
        """Name of a scene object a robot geom touches (``detect``: run collision first)."""
        m, d = self.physics.model, self.physics.data
        if detect:
            mujoco.mj_collision(m, d)
        for i in range(d.ncon):
            g1, g2 = d.contact.geom1[i], d.contact.geom2[i]
            if g1 in self._robot_geoms and g2 in self._blocking:
                return m.geom(g2).name
            if g2 in self._robot_geoms and g1 in self._blocking:
                return m.geom(g1).name
        return None

    def _place_ball_on_back(self) -> None:
        pos, quat = self.physics.base_pose()
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, quat)
        offset = rot.reshape(3, 3) @ np.array([scenes.BALL_HOLDER_X, 0.0, go2.TRUNK_SIZE[2] / 2
                                               + scenes.BALL_RADIUS + 0.002])
        self._set_ball(pos + offset)

    def _set_ball(self, pos: np.ndarray) -> None:
        adr = self.physics.model.jnt_qposadr[self.physics.model.body_jntadr[self._ball]]
        dof = self.physics.model.jnt_dofadr[self.physics.model.body_jntadr[self._ball]]
        self.physics.data.qpos[adr:adr + 7] = [*pos, 1, 0, 0, 0]
        self.physics.data.qvel[dof:dof + 6] = 0.0

    def _update_ball_kinematic(self) -> None:
        if not self._ball_held or abs(self._pitch) < BALL_RELEASE_PITCH:
            return
        heading = np.array([math.cos(self._yaw), math.sin(self._yaw)])
        c, s = heading
        vel_world = np.array([c * self._vel[0] - s * self._vel[1],
                              s * self._vel[0] + c * self._vel[1]])
        drop = BALL_DROP_FRONT if self._pitch > 0 else -BALL_DROP_BACK
        xy = self._xy + drop * heading + BALL_FLIGHT_TIME * vel_world
        z = scenes.BALL_RADIUS
        for obj in self.scene.objects:
            if obj.kind == "tray" and np.linalg.norm(xy - obj.pos[:2]) < scenes.TRAY_RADIUS:
                z += scenes.TRAY_HEIGHT
        self._ball_held, self._ball_landed = False, True
        self._set_ball(np.array([*xy, z]))
        mujoco.mj_kinematics(self.physics.model, self.physics.data)

    # -- physics mode ----------------------------------------------------------------------
    def _physics_step(self, command: np.ndarray) -> str | None:
        """Run the low-level controller for one policy period; a touched object, if any."""
        p, ctrl = self.physics, self.controller
        decimation = max(1, round(ctrl.control_dt / p.physics_dt))
        touched = None
        for _ in range(max(1, round(self.policy_dt / ctrl.control_dt))):
            p.apply(ctrl.step(p.state(), command))
            p.step(decimation)
            touched = touched or self._touched_object(detect=False)
            self.update_ball_holder()
        return touched

    def update_ball_holder(self) -> None:
        """Physics mode: the holder on the back lets the ball go once the trunk tilts past
        ``BALL_RELEASE_PITCH``. Call it after stepping ``physics`` directly (e.g. a ROS bridge)."""
        p = self.physics
        if self._ball_held and abs(p.base_yaw_pitch()[1]) >= BALL_RELEASE_PITCH:
            self._ball_held = False
            p.data.eq_active[p.model.equality("ball_holder").id] = 0

    def _settle_ball(self, command: np.ndarray, limit_s: float = 2.0) -> None:
        """After terminate, stand still in the commanded posture (a tilted trunk keeps the ball
        rolling off) until a released ball comes to rest (physics mode)."""
        stand = self.action_space.default_command()
        posture = self.action_space.indices("body_height", "body_pitch")
        stand[posture] = command[posture]
        for _ in range(round(limit_s / self.policy_dt)):
            if self._ball_held or self.world_state().ball_landed:
                return
            self._physics_step(stand)

    # -- observation and state -------------------------------------------------------------
    def world_state(self) -> tasks.WorldState:
        pos, quat = self.physics.base_pose()
        yaw, pitch = quat_yaw_pitch(quat)
        ball_pos, landed = None, False
        if self._ball is not None:
            ball_pos = self.physics.data.xpos[self._ball].copy()
            if self.mode == "command":
                landed = self._ball_landed
            else:
                vel = self.physics.data.cvel[self._ball][3:]
                landed = tasks.ball_on_ground(ball_pos, vel)
        up = np.zeros(9)
        mujoco.mju_quat2Mat(up, quat)
        fallen = self.mode == "physics" and (pos[2] < 0.12 or up[8] < 0.5)
        if self.mode == "command":
            speed = float(np.linalg.norm(self._vel))
        else:
            speed = float(np.linalg.norm(self.physics.base_velocity()[0][:2]))
        return tasks.WorldState(pos[:2].copy(), yaw, pitch, float(pos[2]), ball_pos, landed,
                                bool(fallen), speed)

    def base_pose(self) -> np.ndarray:
        """(x, y, z, yaw, pitch) of the trunk."""
        pos, quat = self.physics.base_pose()
        return np.array([*pos, *quat_yaw_pitch(quat)])

    def goal_distance(self) -> float:
        """Metres from the trunk to the task's goal region (tasks.GOAL_RADIUS around
        tasks.goal_xy); 0 inside it."""
        centre = math.dist(self.base_pose()[:2], tasks.goal_xy(self.scene))
        return max(0.0, centre - tasks.GOAL_RADIUS[self.task])

    def render(self, height: int | None = None, width: int | None = None) -> np.ndarray:
        """The model frame (``image_size`` by default): the camera renders at its own aspect,
        ``image_size[0]`` px tall, and :func:`~more_policy.vision.to_model_frame` does the rest."""
        h, w = (height or self.image_size[0]), (width or self.image_size[1])
        mujoco.mj_camlight(self.physics.model, self.physics.data)
        render_h, render_w = self.camera.render_size(h)
        return to_model_frame(self.physics.render(render_w, render_h), (h, w))

    def _observation(self) -> Observation:
        image = (self.render() if self.render_observations
                 else np.zeros((0, 0, 3), dtype=np.uint8))
        return Observation(image, self.instruction.text, self.task, self.steps,
                           self.base_pose())

    @property
    def done(self) -> bool:
        return self._done

    def close(self) -> None:
        if self.physics is not None:
            self.physics.close()
            self.physics = None
