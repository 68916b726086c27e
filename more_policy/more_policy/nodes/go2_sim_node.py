"""go2_sim_node: the MuJoCo Go2 in a task scene, speaking the robot's DDS topics.

The sim replaces the robot at the DDS boundary: it receives rt/lowcmd and publishes
rt/lowstate (unitree_go LowCmd_/LowState_ through :class:`Go2RobotEndpoint`, loopback, its own
domain) and the front camera on the realsense-ros topic, so controller_node and policy_node run
exactly as on the robot. The task scene, instruction and success checker come from
:func:`more_policy.sim.env.make_env`; :class:`~more_policy.sim.bridge.Go2SimBridge` advances
its physics in real time on its own thread (slowed down, never skipped, when the machine cannot
keep up); the episode report (std_msgs/String, JSON: task, seed, instruction, success, failure,
base pose, goal) goes out at 2 Hz. The ground-truth trunk motion goes out as nav_msgs/Odometry
and TF odom -> base_link (REP 105: the sim's world frame is odom; twist in base_link), the
camera mount as static TF base_link -> camera_link -> camera_color_optical_frame, and the
simulation time as /clock (rosgraph_msgs/Clock), odometry and clock from the physics thread at
sim-time rates, so nodes launched with use_sim_time (the sim stack's default) run on the
simulated clock. (The IMU reaches ROS as on the robot: controller_node publishes it from
LowState.) Frames are rendered on a second
thread from a copy of the physics state, so LowState keeps its rate.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time

import mujoco
import numpy as np
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.time import Time
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import String

from more_policy.data.ros_messages import EPISODE_TOPIC, IMAGE_TOPIC, INSTRUCTION_TOPIC
from more_policy.nodes.interfaces import (
    INSTRUCTION_QOS,
    SENSOR_QOS,
    STATUS_QOS,
    ParamSpec,
    declare_parameters,
)
from more_policy.nodes.messages import odometry_message, odometry_transform, rgb_to_image
from more_policy.nodes.transforms import TfBroadcaster
from more_policy.sim import tasks
from more_policy.sim.go2_mjcf import CAMERA_NAME
from more_policy.sim.render import render_camera
from more_policy.vision import D435_COLOR

PARAMETERS = (
    ParamSpec("task", "go_to",
              "task scene: distinguish | go_to | go_avoid | go_through | crawl | unload"),
    ParamSpec("seed", 0, "scene and instruction seed"),
    ParamSpec("network_interface", "lo", "NIC for the Unitree DDS topics (lo: this machine)"),
    ParamSpec("dds_domain_id", 1, "Unitree DDS domain of rt/lowcmd, rt/lowstate"),
    ParamSpec("image_topic", IMAGE_TOPIC, "sensor_msgs/Image front camera topic"),
    ParamSpec("image_width", 320, "camera image width [px] (the D435 colour stream is 4:3)"),
    ParamSpec("image_height", 240, "camera image height [px]"),
    ParamSpec("camera_rate_hz", 5.0, "camera frame rate [Hz]"),
    ParamSpec("episode_topic", EPISODE_TOPIC, "std_msgs/String episode report (JSON)"),
    ParamSpec("publish_instruction", False,
              "publish the scene's instruction on instruction_topic at start"),
    ParamSpec("instruction_topic", INSTRUCTION_TOPIC, "where publish_instruction publishes"),
    ParamSpec("real_time_factor", 1.0, "sim seconds per wall second (upper bound)"),
    ParamSpec("odom_topic", "/odom", "nav_msgs/Odometry of the trunk (odom -> base_link)"),
    ParamSpec("odom_rate_hz", 50.0, "odometry (and TF odom -> base_link) rate [Hz of sim time]"),
    ParamSpec("publish_tf", True,
              "TF: odom -> base_link (ground truth, with each odometry message) on /tf, the "
              "camera mount base_link -> camera_link -> camera_color_optical_frame on /tf_static"),
    ParamSpec("clock_rate_hz", 100.0, "/clock publishing rate [Hz of sim time]"),
)
CLOCK_QOS = QoSProfile(depth=1)  # what rclpy's use_sim_time subscription expects (reliable)
EPISODE_RATE_HZ = 2.0
INSTRUCTION_SETTLE_S = 0.5  # after the first /instruction reader matched
MAX_CATCH_UP_STEPS = 20  # physics steps per loop iteration before the sim slows down instead


class Go2SimNode(Node):
    """Thin rclpy wrapper around a physics-mode task environment and its Go2SimBridge."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__("go2_sim_node", **node_kwargs)
        from more_policy.robot.go2_io import Go2IOConfig
        from more_policy.sim.bridge import Go2SimBridge, SimBridgeConfig
        from more_policy.sim.env import make_env

        p = self.params = declare_parameters(self, PARAMETERS)
        self._sim_time = self.get_parameter("use_sim_time").value
        rates = ("camera_rate_hz", "real_time_factor", "odom_rate_hz", "clock_rate_hz")
        if not all(p[name] > 0 for name in rates):
            raise ValueError(f"{', '.join(rates)} must be > 0")
        # No env controller: the robot's controller is across DDS, the bridge drives physics.
        self.env = make_env(p["task"], seed=p["seed"], mode="physics",
                            image_size=(p["image_height"], p["image_width"]), render=False)
        self.env.reset(seed=p["seed"])
        self.physics = self.env.physics
        self.instruction = self.env.instruction.text
        self.success, self.failure = False, None
        self.bridge = Go2SimBridge(
            Go2IOConfig(domain_id=p["dds_domain_id"], interface=p["network_interface"] or None),
            SimBridgeConfig(real_time_factor=p["real_time_factor"],
                            max_catch_up_steps=MAX_CATCH_UP_STEPS, log_every=0),
            physics=self.physics, after_step=self.env.update_ball_holder,  # Unload: release
            on_bad_command=lambda e: self.get_logger().warning(
                f"ignoring LowCmd: {e}", throttle_duration_sec=1.0))
        self._lock = self.bridge.lock
        self.image_pub = self.create_publisher(Image, p["image_topic"], SENSOR_QOS)
        self.episode_pub = self.create_publisher(String, p["episode_topic"], STATUS_QOS)
        self.odom_pub = self.create_publisher(Odometry, p["odom_topic"], SENSOR_QOS)
        self.clock_pub = self.create_publisher(Clock, "/clock", CLOCK_QOS)
        # the camera is the MJCF's, built from the same CameraConfig (sim.go2_mjcf)
        self.tf = TfBroadcaster(self, D435_COLOR) if p["publish_tf"] else None
        self._next_odom = self._next_clock = 0.0  # sim time of the next message [s]
        if p["publish_instruction"]:
            self.instruction_pub = self.create_publisher(String, p["instruction_topic"],
                                                         INSTRUCTION_QOS)
            # Readers are volatile (interfaces.INSTRUCTION_SUBSCRIPTION_QOS): publish once they
            # have matched, not into the void while discovery is still running.
            self._first_match: float | None = None
            self._instruction_timer = self.create_timer(0.1, self._publish_instruction_once)
        self.create_timer(1.0 / EPISODE_RATE_HZ, self._publish_episode)
        self._stop = threading.Event()
        self._first_frame = threading.Event()
        self._threads = [threading.Thread(target=self._camera_loop, name="go2_sim_camera",
                                          daemon=True),
                         threading.Thread(target=self._sim_loop, name="go2_sim", daemon=True)]
        # The first render builds the GL context (in the camera thread, which owns it): let it
        # finish before physics starts the clock.
        self._threads[0].start()
        self._first_frame.wait(timeout=30.0)
        self._threads[1].start()
        self.get_logger().info(f"sim {p['task']} seed {p['seed']}: {self.instruction!r}")

    def _publish_instruction_once(self) -> None:
        if self.instruction_pub.get_subscription_count() == 0:
            return
        now = time.monotonic()
        self._first_match = self._first_match or now
        # The readers of one process (policy, recorder) match within moments of each other.
        if now - self._first_match >= INSTRUCTION_SETTLE_S:
            self.instruction_pub.publish(String(data=self.instruction))
            self._instruction_timer.cancel()

    def _sim_loop(self) -> None:
        try:
            self.bridge.run(stop=lambda: self._stop.is_set() or not self.context.ok(),
                            after_batch=self._after_batch)
        except Exception as e:  # the robot "dies": the controller's state timeout takes over
            self.get_logger().fatal(f"simulation stopped: {type(e).__name__}: {e}")
            raise

    def _after_batch(self) -> None:
        """After each batch of physics steps (sim thread): episode check, /clock, odometry."""
        with self._lock:
            success, failure = self.env.checker.update(self.env.world_state())
            self.success = self.success or success
            self.failure = self.failure or failure
            now = self.physics.time
            motion = None
            if now >= self._next_odom:
                motion = (*self.physics.base_pose(), *self.physics.base_velocity())
        if not self.context.ok():  # shutting down: the publishers are going away
            return
        if now >= self._next_clock:
            self._next_clock = now + 1.0 / self.params["clock_rate_hz"]
            self.clock_pub.publish(Clock(clock=Time(seconds=now).to_msg()))
        if motion is not None:
            self._next_odom = now + 1.0 / self.params["odom_rate_hz"]
            odom = odometry_message(*motion, self._stamp(now))
            self.odom_pub.publish(odom)
            if self.tf is not None:
                self.tf.send(odometry_transform(odom))

    def _stamp(self, sim_time: float):
        """Header stamp of data taken at ``sim_time``: exactly that time on the simulated clock
        (the node's own clock lags it by up to one /clock period), else the wall clock."""
        if self._sim_time:
            return Time(seconds=sim_time).to_msg()
        return self.get_clock().now().to_msg()

    def _render_frame(self) -> None:
        """Publish a frame rendered from a snapshot of the physics state."""
        p = self.params
        with self._lock:
            snapshot = copy.copy(self.physics.data)
        mujoco.mj_camlight(self.physics.model, snapshot)
        rgb = render_camera(self.physics.model, snapshot, p["image_width"], p["image_height"],
                            CAMERA_NAME)
        self.image_pub.publish(rgb_to_image(rgb, stamp=self._stamp(snapshot.time)))

    def _camera_loop(self) -> None:
        """Frames on their own thread, so rendering never stalls LowState."""
        p = self.params
        period = 1.0 / (p["camera_rate_hz"] * p["real_time_factor"])
        next_frame = time.perf_counter()
        try:
            while not self._stop.is_set() and self.context.ok():
                self._render_frame()
                self._first_frame.set()
                next_frame += period
                delay = next_frame - time.perf_counter()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_frame = time.perf_counter()
        except Exception as e:  # a dead camera: the policy's staleness check stops acting
            self.get_logger().fatal(f"camera stopped: {type(e).__name__}: {e}")
            raise
        finally:
            self._first_frame.set()

    def episode_report(self) -> dict:
        with self._lock:
            pose = self.env.base_pose()  # x, y, z, yaw, pitch
            scene = self.env.scene
            goal = tasks.goal_xy(scene)
            return {
                "task": self.params["task"], "seed": self.params["seed"],
                "instruction": self.instruction, "sim_time": round(self.physics.time, 3),
                "success": bool(self.success), "failure": self.failure,
                "base_pose": [round(float(v), 4) for v in pose],
                "base_speed": round(float(np.linalg.norm(self.physics.base_velocity()[0][:2])), 4),
                "goal_xy": [round(float(v), 4) for v in goal],
                "goal_distance": round(math.dist(pose[:2], goal), 4),
            }

    def _publish_episode(self) -> None:
        self.episode_pub.publish(String(data=json.dumps(self.episode_report())))

    def destroy_node(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2.0)
        self.bridge.close()
        self.env.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    from more_policy.nodes.runner import node_main

    node_main(Go2SimNode, args)


if __name__ == "__main__":
    main()
