"""The Unitree Go2 as MJCF, written in code from the constants in :mod:`more_policy.robot.go2`.

Floating trunk, four legs of (hip, thigh, calf) hinges named as ``JOINT_NAMES`` (SDK order),
URDF joint limits, one torque motor per joint (the PD law of the motor drivers is evaluated
in :class:`~more_policy.sim.physics.Go2Physics` at every physics step, so the model accepts a
:class:`~more_policy.robot.go2.MotorCommand` exactly like the robot), an IMU site with
quaternion / gyro / accelerometer / velocimeter sensors, foot spheres with touch sensors, and
the front camera at the RealSense D435 mount.

Joint axes follow the URDF: hip about +x, thigh and calf about +y (positive thigh swings the
foot backwards, the calf is negative with the knee pointing back).
"""

from __future__ import annotations

import math

import numpy as np

from more_policy.robot import go2
from more_policy.vision import D435_COLOR, CameraConfig

PHYSICS_DT = 0.005  # s; walk-these-ways' simulation step (its policy runs every 4 steps)
CAMERA_NAME = "front_camera"
IMU_SITE = "imu"
TRUNK_BODY = "trunk"
FOOT_GEOMS = tuple(f"{leg}_foot" for leg in go2.LEGS)
THIGH_RADIUS, CALF_RADIUS = 0.022, 0.013
# Body geoms collide with the world (bit 1); they never collide with each other.
ROBOT_CONTYPE, ROBOT_CONAFFINITY = 2, 1


def _fmt(v) -> str:
    return " ".join(f"{x:.6g}" for x in np.ravel(v))


def _box_inertia(mass: float, size: tuple[float, float, float]) -> np.ndarray:
    lx, ly, lz = size
    return mass / 12.0 * np.array([ly**2 + lz**2, lx**2 + lz**2, lx**2 + ly**2])


def leg_xml(leg_index: int) -> str:
    """One leg (hip, thigh, calf bodies and the foot) attached at its hip joint."""
    leg = go2.LEGS[leg_index]
    side, front = go2.LEG_SIDE[leg_index], go2.LEG_FRONT[leg_index]
    lo, hi = go2.JOINT_LOWER[3 * leg_index:3 * leg_index + 3], go2.JOINT_UPPER[3 * leg_index:
                                                                              3 * leg_index + 3]
    names = go2.JOINT_NAMES[3 * leg_index:3 * leg_index + 3]
    hip_pos = (front * go2.HIP_OFFSET_X, side * go2.HIP_OFFSET_Y, 0.0)
    thigh_pos = (0.0, side * go2.HIP_TO_THIGH_Y, 0.0)
    geom = f'contype="{ROBOT_CONTYPE}" conaffinity="{ROBOT_CONAFFINITY}"'
    # the foot's mass joins the calf's (a body with an <inertial> ignores geom masses)
    calf_mass = go2.CALF_MASS + go2.FOOT_MASS
    calf_com = -(0.1 * go2.CALF_MASS + go2.CALF_LENGTH * go2.FOOT_MASS) / calf_mass
    return f"""
    <body name="{leg}_hip" pos="{_fmt(hip_pos)}">
      <inertial pos="0 0 0" mass="{go2.HIP_MASS}" diaginertia="0.0005 0.0008 0.0006"/>
      <joint name="{names[0]}" axis="1 0 0" range="{lo[0]} {hi[0]}"/>
      <geom type="cylinder" size="0.046 0.02" quat="0.7071 0.7071 0 0" material="robot_dark"
            {geom}/>
      <body name="{leg}_thigh" pos="{_fmt(thigh_pos)}">
        <inertial pos="0 0 -0.03" mass="{go2.THIGH_MASS}" diaginertia="0.005 0.005 0.001"/>
        <joint name="{names[1]}" axis="0 1 0" range="{lo[1]} {hi[1]}"/>
        <geom type="capsule" fromto="0 0 0 0 0 {-go2.THIGH_LENGTH}" size="{THIGH_RADIUS}"
              material="robot_grey" {geom}/>
        <body name="{leg}_calf" pos="0 0 {-go2.THIGH_LENGTH}">
          <inertial pos="0 0 {calf_com:.4f}" mass="{calf_mass:.4f}"
                    diaginertia="0.0012 0.0012 0.00005"/>
          <joint name="{names[2]}" axis="0 1 0" range="{lo[2]} {hi[2]}"/>
          <geom type="capsule" fromto="0 0 0 0 0 {-go2.CALF_LENGTH + 0.02}"
                size="{CALF_RADIUS}" material="robot_dark" {geom}/>
          <geom name="{leg}_foot" type="sphere" pos="0 0 {-go2.CALF_LENGTH}"
                size="{go2.FOOT_RADIUS}" friction="1.0 0.02 0.01" condim="6"
                material="robot_dark" {geom}/>
          <site name="{leg}_foot_site" pos="0 0 {-go2.CALF_LENGTH}"
                size="{go2.FOOT_RADIUS + 0.004}" rgba="0 0 0 0"/>
        </body>
      </body>
    </body>"""


def robot_body_xml(base_height: float, camera: CameraConfig = D435_COLOR) -> str:
    """The trunk body with its free joint, head, camera, IMU site and the four legs."""
    half = np.array(go2.TRUNK_SIZE) / 2
    pitch = math.radians(camera.pitch_down_deg)
    cam, cam_pos = (math.cos(pitch), math.sin(pitch)), camera.mount_xyz
    geom = f'contype="{ROBOT_CONTYPE}" conaffinity="{ROBOT_CONAFFINITY}"'
    legs = "".join(leg_xml(i) for i in range(len(go2.LEGS)))
    return f"""
  <body name="{TRUNK_BODY}" pos="0 0 {base_height:.4f}">
    <freejoint name="base"/>
    <inertial pos="0.0223 0.002 -0.0005" mass="{go2.TRUNK_MASS}"
              diaginertia="{_fmt(_box_inertia(go2.TRUNK_MASS, go2.TRUNK_SIZE))}"/>
    <geom name="trunk" type="box" size="{_fmt(half)}" material="robot_grey" {geom}/>
    <geom name="head" type="box" pos="0.245 0 0.015" size="0.055 0.045 0.04"
          material="robot_dark" mass="0" {geom}/>
    <geom name="camera_housing" type="box" pos="{cam_pos[0] - 0.012} 0 {cam_pos[2]}"
          size="0.0125 0.045 0.0125" rgba="0.1 0.1 0.1 1" mass="0" contype="0"
          conaffinity="0"/>
    <site name="{IMU_SITE}" pos="0 0 0" size="0.01" rgba="0 0 0 0"/>
    <camera name="{CAMERA_NAME}" pos="{_fmt(cam_pos)}" fovy="{camera.vfov_deg}"
            xyaxes="0 -1 0 {cam[1]:.6f} 0 {cam[0]:.6f}"/>{legs}
  </body>"""


def actuators_xml() -> str:
    """One torque motor per joint, limited to the Go2's motor torque."""
    return "\n".join(
        f'    <motor name="{n.removesuffix("_joint")}" joint="{n}" ctrllimited="true" '
        f'ctrlrange="{-t} {t}"/>' for n, t in zip(go2.JOINT_NAMES, go2.TORQUE_LIMIT))


def sensors_xml() -> str:
    feet = "\n".join(f'    <touch name="{leg}_foot_force" site="{leg}_foot_site"/>'
                     for leg in go2.LEGS)
    return f"""
    <framequat name="imu_quat" objtype="site" objname="{IMU_SITE}"/>
    <gyro name="imu_gyro" site="{IMU_SITE}"/>
    <accelerometer name="imu_accel" site="{IMU_SITE}"/>
    <velocimeter name="imu_vel" site="{IMU_SITE}"/>
{feet}"""


ROBOT_ASSETS = """
    <material name="robot_grey" rgba="0.62 0.64 0.66 1" specular="0.3"/>
    <material name="robot_dark" rgba="0.12 0.12 0.13 1"/>"""


def default_base_height() -> float:
    """Trunk height [m] with the feet on the ground in ``DEFAULT_JOINT_POS`` (front/rear mean)."""
    heights = []
    for leg in range(len(go2.LEGS)):
        hip, thigh, calf = go2.DEFAULT_JOINT_POS[3 * leg:3 * leg + 3]
        depth = go2.THIGH_LENGTH * math.cos(thigh) + go2.CALF_LENGTH * math.cos(thigh + calf)
        heights.append(depth * math.cos(hip) + go2.FOOT_RADIUS)
    return float(np.mean(heights))


def build_mjcf(worldbody: str = "", assets: str = "", name: str = "go2",
               base_height: float | None = None, timestep: float = PHYSICS_DT,
               extra: str = "", camera: CameraConfig = D435_COLOR) -> str:
    """A complete MJCF: options, floor, lights, the Go2 (its head camera from ``camera``), and
    extra scene XML.

    ``worldbody`` and ``assets`` are XML fragments added to the scene (task objects);
    ``extra`` holds further top-level sections (e.g. <equality>).
    """
    if not timestep > 0:
        raise ValueError(f"timestep must be > 0, got {timestep}")
    height = default_base_height() if base_height is None else base_height
    return f"""<mujoco model="{name}">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep}" integrator="implicitfast" cone="pyramidal"/>
  <size memory="8M"/>
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <global offwidth="1280" offheight="960"/>
    <!-- the headlight alone: a second light costs ~3x render time on software GL -->
    <headlight ambient="0.5 0.5 0.5" diffuse="0.6 0.6 0.6" specular="0.05 0.05 0.05"/>
  </visual>
  <default>
    <joint armature="0.01" damping="0.05" frictionloss="0.0"/>
    <geom friction="0.9 0.02 0.01" solref="0.005 1"/>
  </default>
  <asset>
    <texture name="floor_grid" type="2d" builtin="checker" width="256" height="256"
             rgb1="0.55 0.52 0.48" rgb2="0.48 0.45 0.42"/>
    <material name="floor" texture="floor_grid" texrepeat="10 10" reflectance="0"/>{ROBOT_ASSETS}
{assets}
  </asset>
  <worldbody>
    <geom name="floor" type="plane" size="30 30 0.1" material="floor" contype="1"
          conaffinity="3"/>{robot_body_xml(height, camera)}
{worldbody}
  </worldbody>{extra}
  <actuator>
{actuators_xml()}
  </actuator>
  <sensor>{sensors_xml()}
  </sensor>
</mujoco>"""
