"""Low-level MuJoCo Go2: RobotState out, MotorCommand in, like rt/lowstate and rt/lowcmd.

Used by the physics mode of the task environment, the analytic gait controller's tests and the
ROS go2 sim bridge::

    physics = Go2Physics()                      # robot on a flat floor (or Go2Physics(xml))
    physics.apply(MotorCommand(q=DEFAULT_JOINT_POS, kp=..., kd=...))
    physics.step(4)                             # the PD law runs at every physics step
    state = physics.state()                     # RobotState in SDK motor order
    image = physics.render(240, 240)            # front camera, uint8 (H, W, 3)
"""

from __future__ import annotations

import mujoco
import numpy as np

from more_policy.robot import go2
from more_policy.sim import go2_mjcf, render


class Go2Physics:
    """A MuJoCo model holding the Go2 (from :func:`go2_mjcf.build_mjcf`), stepped with PD."""

    def __init__(self, xml: str | mujoco.MjModel | None = None):
        if xml is None:
            xml = go2_mjcf.build_mjcf()
        self.model = xml if isinstance(xml, mujoco.MjModel) else mujoco.MjModel.from_xml_string(
            xml)
        self.data = mujoco.MjData(self.model)
        m = self.model
        try:
            joints = [m.joint(n) for n in go2.JOINT_NAMES]
            self._base_qpos = m.joint("base").qposadr[0]
            self._base_dof = m.joint("base").dofadr[0]
            self._actuators = np.array([m.actuator(n.removesuffix("_joint")).id
                                        for n in go2.JOINT_NAMES])
        except KeyError as e:
            raise ValueError(f"model has no Go2 element {e}; build it with go2_mjcf") from None
        self._qpos = np.array([j.qposadr[0] for j in joints])  # (12,) SDK order
        self._dof = np.array([j.dofadr[0] for j in joints])  # (12,)
        self._sensor = {n: slice(m.sensor(n).adr[0], m.sensor(n).adr[0] + m.sensor(n).dim[0])
                        for n in ("imu_quat", "imu_gyro", "imu_accel", "imu_vel")}
        self._foot_sensors = [slice(m.sensor(f"{leg}_foot_force").adr[0],
                                    m.sensor(f"{leg}_foot_force").adr[0] + 1)
                              for leg in go2.LEGS]
        self._trunk = m.body(go2_mjcf.TRUNK_BODY).id
        self._command = go2.MotorCommand.damping()
        self.reset()

    @property
    def physics_dt(self) -> float:
        return float(self.model.opt.timestep)

    @property
    def time(self) -> float:
        return float(self.data.time)

    # -- reset / pose --------------------------------------------------------------------
    def reset(self, base_pos=None, yaw: float = 0.0, joint_pos=None) -> None:
        """Stand the robot at ``base_pos`` (x, y, z; default height from the default pose)."""
        mujoco.mj_resetData(self.model, self.data)
        pos = np.array([0.0, 0.0, go2_mjcf.default_base_height()] if base_pos is None
                       else base_pos, dtype=float)
        self.set_base_pose(pos, yaw_pitch_quat(yaw, 0.0))
        self.data.qpos[self._qpos] = go2.DEFAULT_JOINT_POS if joint_pos is None else joint_pos
        self._command = go2.MotorCommand(q=self.joint_pos(), kp=np.full(12, go2.DEFAULT_KP),
                                         kd=np.full(12, go2.DEFAULT_KD))
        mujoco.mj_forward(self.model, self.data)

    def set_base_pose(self, pos, quat, lin_vel=None, ang_vel=None) -> None:
        """Place the floating base (world position, wxyz quaternion, world velocities)."""
        a, d = self._base_qpos, self._base_dof
        self.data.qpos[a:a + 3] = pos
        self.data.qpos[a + 3:a + 7] = quat
        self.data.qvel[d:d + 3] = 0.0 if lin_vel is None else lin_vel
        # free-joint angular velocity is in the body frame
        if ang_vel is None:
            self.data.qvel[d + 3:d + 6] = 0.0
        else:
            rot = np.zeros(9)
            mujoco.mju_quat2Mat(rot, np.asarray(quat, dtype=float))
            self.data.qvel[d + 3:d + 6] = rot.reshape(3, 3).T @ np.asarray(ang_vel)

    def set_joint_pos(self, q: np.ndarray) -> None:
        self.data.qpos[self._qpos] = q
        self.data.qvel[self._dof] = 0.0

    # -- I/O like the motor drivers ------------------------------------------------------
    def apply(self, command: go2.MotorCommand) -> None:
        """Hold ``command`` until the next apply; its PD law is evaluated every physics step."""
        for name in ("q", "dq", "kp", "kd", "tau"):
            value = np.asarray(getattr(command, name), dtype=float)
            if value.shape != (go2.NUM_MOTORS,):
                raise ValueError(f"MotorCommand.{name} must have shape (12,), got {value.shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"MotorCommand.{name} has non-finite values: {value}")
        self._command = command

    def step(self, n: int = 1) -> None:
        """Advance ``n`` physics steps with the motor PD law recomputed before each."""
        for _ in range(int(n)):
            q, dq = self.data.qpos[self._qpos], self.data.qvel[self._dof]
            self.data.ctrl[self._actuators] = self._command.torque(q, dq)
            mujoco.mj_step(self.model, self.data)

    def joint_pos(self) -> np.ndarray:
        return self.data.qpos[self._qpos].copy()

    def joint_vel(self) -> np.ndarray:
        return self.data.qvel[self._dof].copy()

    def state(self) -> go2.RobotState:
        """The rt/lowstate view: joints, measured torque, IMU, foot forces, ms tick."""
        s = self.data.sensordata
        return go2.RobotState(
            q=self.joint_pos(), dq=self.joint_vel(),
            tau=self.data.actuator_force[self._actuators].copy(),
            quat=s[self._sensor["imu_quat"]].copy(), gyro=s[self._sensor["imu_gyro"]].copy(),
            accel=s[self._sensor["imu_accel"]].copy(),
            foot_force=np.array([s[f][0] for f in self._foot_sensors]),
            tick=int(round(self.data.time * 1000)))

    def base_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,), quaternion wxyz (4,)) of the trunk in the world."""
        a = self._base_qpos
        return self.data.qpos[a:a + 3].copy(), self.data.qpos[a + 3:a + 7].copy()

    def base_velocity(self) -> tuple[np.ndarray, np.ndarray]:
        """(linear velocity in the world frame, angular velocity in the body frame)."""
        d = self._base_dof
        return self.data.qvel[d:d + 3].copy(), self.data.qvel[d + 3:d + 6].copy()

    def base_yaw_pitch(self) -> tuple[float, float]:
        """Heading (yaw) and pitch (nose down +) of the trunk."""
        return quat_yaw_pitch(self.base_pose()[1])

    # -- camera --------------------------------------------------------------------------
    def render(self, width: int = 240, height: int = 240,
               camera: str = go2_mjcf.CAMERA_NAME) -> np.ndarray:
        """The front camera image, uint8 (height, width, 3) (pooled offscreen renderer)."""
        return render.render_camera(self.model, self.data, int(width), int(height), camera)

    def close(self) -> None:
        """Kept for symmetry with environments; renderers are pooled in :mod:`render`."""


def yaw_pitch_quat(yaw: float, pitch: float) -> np.ndarray:
    """wxyz quaternion of a yaw about z then a pitch about the body y (nose down = +pitch)."""
    cy, sy, cp, sp = np.cos(yaw / 2), np.sin(yaw / 2), np.cos(pitch / 2), np.sin(pitch / 2)
    # q = q_yaw * q_pitch; q_yaw = (cy, 0, 0, sy), q_pitch = (cp, 0, sp, 0)
    return np.array([cy * cp, -sy * sp, cy * sp, sy * cp])


def quat_yaw_pitch(quat: np.ndarray) -> tuple[float, float]:
    w, x, y, z = quat
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    pitch = np.arcsin(np.clip(2 * (w * y - z * x), -1.0, 1.0))
    return float(yaw), float(pitch)
