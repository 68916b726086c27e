"""controller_node: /more/command -> low-level controller at 50 Hz -> rt/lowcmd (Go2 or sim).

A thin wrapper around :class:`~more_policy.control.loop.ControlLoop` on its own thread: newest
LowState from :class:`~more_policy.robot.go2_io.Go2Client`, the safe stand-up, then the gait
controller (analytic or walk-these-ways) guarded by the safety monitor, which owns the fail-safe
behaviour: a stale command brings the robot to a stand; a stale LowState, invalid sensor data,
a tilt or joint limit or an e-stop latches damping (deactivate and activate again, or restart
the node, to clear), logged once with its reason. A command with terminate set becomes the
stand command.

The command ranges the safety layer clamps to are a parameter (``action_space``: the policy
checkpoint's action_space.json), so they are the ranges the policy was trained with. On the
robot, ``release_sport_mode`` checks and releases Unitree's sport-mode controller before the
first LowCmd (MotionSwitcherClient), and refuses to start when that is not possible.

A managed (lifecycle) node: configure connects DDS, activate starts the stand-up and the LowCmd
stream (nothing reaches rt/lowcmd before), deactivate damps, cleanup/shutdown close DDS; the
``autostart`` parameter (default true) drives configure + activate at start.

The DDS domain and network interface select the robot (domain 0, its NIC) or the sim
(loopback, its own domain). Publishes sensor_msgs/JointState, sensor_msgs/Imu and
nav_msgs/Odometry (dead reckoning, see :mod:`more_policy.control.odometry`) every tick,
TF odom -> base_link with each odometry message and the camera mount as static TF
(``publish_tf``), and diagnostic_msgs/DiagnosticArray at ``diagnostics_rate_hz``.
"""

from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Bool

from more_msgs.msg import Go2Command
from more_policy.actions import ActionSpace, ActionSpaceError
from more_policy.control.loop import ControlLoop
from more_policy.control.odometry import LeggedOdometry
from more_policy.control.safety import SafetyConfig, SafetyMonitor
from more_policy.control.stand import StandUpConfig, StandUpSequence
from more_policy.data.ros_messages import (
    COMMAND_TOPIC,
    DIAGNOSTICS_TOPIC,
    JOINT_STATES_TOPIC,
    stamp_to_ns,
)
from more_policy.nodes.interfaces import (
    COMMAND_QOS,
    SENSOR_QOS,
    STATUS_QOS,
    ParamSpec,
    declare_parameters,
)
from more_policy.nodes.messages import imu_message, odometry_message, odometry_transform
from more_policy.nodes.transforms import TfBroadcaster
from more_policy.robot.go2 import JOINT_NAMES, MotorCommand
from more_policy.vision import D435_COLOR

CONTROLLERS = ("analytic", "wtw")
MAX_ODOMETRY_STEP_S = 0.5  # a longer gap (a stalled process) is not integrated as motion

PARAMETERS = (
    ParamSpec("autostart", True,
              "configure and activate at start (node executable, `more run`); false: stay "
              "unconfigured until `ros2 lifecycle set` or a lifecycle manager drives it"),
    ParamSpec("controller", "analytic",
              "low-level controller: analytic (gait generator) | wtw (walk-these-ways)"),
    ParamSpec("wtw_checkpoint", "",
              "walk-these-ways checkpoint directory (adaptation + body .jit); needed for wtw"),
    ParamSpec("network_interface", "lo", "NIC facing the Go2 (e.g. eth0), lo for the sim"),
    ParamSpec("dds_domain_id", 0, "Unitree DDS domain of rt/lowcmd, rt/lowstate (Go2: 0)"),
    ParamSpec("lowcmd_stream_hz", 500.0,
              "re-send the latest LowCmd at this rate (the Go2 expects 500 Hz; 0 = only at the "
              "control rate)"),
    ParamSpec("command_topic", COMMAND_TOPIC, "more_msgs/Go2Command input topic"),
    ParamSpec("estop_topic", "/more/estop", "std_msgs/Bool: true latches damping (e-stop)"),
    ParamSpec("joint_states_topic", JOINT_STATES_TOPIC, "sensor_msgs/JointState output topic"),
    ParamSpec("imu_topic", "/imu/data",
              "sensor_msgs/Imu from LowState's IMU (frame base_link), every control tick"),
    ParamSpec("odom_topic", "/odom",
              "nav_msgs/Odometry odom -> base_link dead-reckoned from LowState (IMU attitude, "
              "leg odometry; control/odometry.py), every control tick; empty: no odometry "
              "and no TF odom -> base_link"),
    ParamSpec("publish_tf", True,
              "TF: that estimate as odom -> base_link on /tf, the camera mount base_link -> "
              "camera_link -> camera_color_optical_frame on /tf_static (false where another "
              "node owns them: the sim publishes ground truth)"),
    ParamSpec("diagnostics_topic", DIAGNOSTICS_TOPIC, "diagnostic_msgs/DiagnosticArray topic"),
    ParamSpec("control_rate_hz", 50.0, "control loop rate [Hz] (walk-these-ways: 50)"),
    ParamSpec("diagnostics_rate_hz", 2.0, "diagnostics publishing rate [Hz]"),
    ParamSpec("action_space", "",
              "action_space.json (or a checkpoint directory holding it) whose ranges the "
              "commands are clamped to: the policy's; empty: the actions.py defaults"),
    ParamSpec("release_sport_mode", False,
              "check and release the Go2's sport mode (MotionSwitcherClient) before low-level "
              "control; true on the robot"),
    ParamSpec("command_timeout_s", 0.15, "no command for this long (from its stamp) -> "
              "stop and stand [s]"),
    ParamSpec("state_timeout_s", 0.08,
              "newest LowState older than this on two ticks in a row -> damping (latched) [s]"),
    ParamSpec("tilt_limit_rad", 0.8, "roll/pitch beyond this -> damping (latched) [rad]"),
    ParamSpec("standup_damping_s", 1.0, "safe start: pure damping for this long [s]"),
    ParamSpec("standup_ramp_s", 2.0, "safe start: ramp to the stand pose over this long [s]"),
)


def build_controller(kind: str, wtw_checkpoint: str, control_dt: float, space: ActionSpace):
    """The LowLevelController named by the parameters."""
    if kind == "analytic":
        from more_policy.control.gait import GaitConfig, GaitController

        return GaitController(GaitConfig(control_dt=control_dt), space)
    if kind == "wtw":
        from more_policy.control.wtw import WalkTheseWaysRunner

        if not wtw_checkpoint:
            raise ValueError("controller 'wtw' needs the wtw_checkpoint parameter")
        runner = WalkTheseWaysRunner.from_checkpoint(wtw_checkpoint, action_space=space)
        if abs(runner.control_dt - control_dt) > 1e-9:
            raise ValueError(f"walk-these-ways runs at {1 / runner.control_dt:g} Hz; set "
                             f"control_rate_hz accordingly (got {1 / control_dt:g})")
        return runner
    raise ValueError(f"parameter controller must be one of {CONTROLLERS}, got {kind!r}")


class ControllerNode(LifecycleNode):
    """Managed (lifecycle) wrapper around Go2Client + StandUpSequence + SafeController.

    configure connects DDS (and releases sport mode), activate starts the safe stand-up and
    the LowCmd stream, deactivate damps (the stream keeps repeating the damping command),
    cleanup/shutdown close DDS. Nothing reaches rt/lowcmd before activate. With ``autostart``
    (the default) the node executable and ``more run`` configure and activate it at start;
    false leaves it unconfigured for ``ros2 lifecycle set`` or a lifecycle manager.
    """

    def __init__(self, **node_kwargs) -> None:
        super().__init__("controller_node", **node_kwargs)
        p = self.params = declare_parameters(self, PARAMETERS)
        if not p["control_rate_hz"] > 0:
            raise ValueError(f"control_rate_hz must be > 0, got {p['control_rate_hz']}")
        self.control_dt = 1.0 / p["control_rate_hz"]
        self.space = ActionSpace.load(p["action_space"]) if p["action_space"] else ActionSpace()
        self.client = None  # Go2Client, from configure to cleanup
        self.controller = None  # the gait controller, from configure to cleanup
        self.loop: ControlLoop | None = None  # from activate to deactivate
        self._max_state_age = 0.0  # since the last diagnostics message [s]
        self.joint_pub = self.create_publisher(JointState, p["joint_states_topic"], STATUS_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, p["diagnostics_topic"], STATUS_QOS)
        self.imu_pub = self.create_publisher(Imu, p["imu_topic"], SENSOR_QOS)
        self.odom_pub = (self.create_publisher(Odometry, p["odom_topic"], SENSOR_QOS)
                         if p["odom_topic"] else None)
        self.tf = TfBroadcaster(self, D435_COLOR) if p["publish_tf"] else None
        self.odometry = LeggedOdometry(self.control_dt)  # continuous across lifecycle changes
        self._last_odometry_ns: int | None = None  # node clock of the last estimate
        self._odometry_state_time: float | None = None  # receive time of the state it used
        self.create_subscription(Go2Command, p["command_topic"], self._on_command, COMMAND_QOS)
        self.create_subscription(Bool, p["estop_topic"], self._on_estop, COMMAND_QOS)
        # Wall-clock timers even under use_sim_time, like the control loop itself: robot state
        # flows in real time (only the stamps follow the node clock).
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(self.control_dt, self._publish_joint_states, clock=steady)
        self.create_timer(1.0 / p["diagnostics_rate_hz"], self._publish_diagnostics, clock=steady)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def is_active(self) -> bool:
        return self.loop is not None

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        from more_policy.robot.go2_io import (
            Go2Client,
            Go2IOConfig,
            SportModeError,
            release_sport_mode,
        )

        p = self.params
        io = Go2IOConfig(domain_id=p["dds_domain_id"], interface=p["network_interface"] or None,
                         stream_hz=p["lowcmd_stream_hz"] or 500.0)
        try:
            controller = build_controller(p["controller"], p["wtw_checkpoint"],
                                          self.control_dt, self.space)
            if p["release_sport_mode"]:
                released = release_sport_mode(io)
                self.get_logger().info(f"sport mode {released!r} released" if released else
                                       "no sport mode active: low-level control is free")
        except (ValueError, OSError, SportModeError) as e:
            self.get_logger().error(f"configure failed: {type(e).__name__}: {e}")
            return TransitionCallbackReturn.FAILURE
        self.controller, self.client = controller, Go2Client(io)
        self.get_logger().info(
            f"{p['controller']} controller at {p['control_rate_hz']:g} Hz on DDS domain "
            f"{p['dds_domain_id']} ({p['network_interface'] or 'auto'}): configured")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        p = self.params
        # A fresh safety monitor and stand-up each time (the controller is reset on the first
        # healthy tick): activate clears a latched fault and always starts from damping.
        monitor = SafetyMonitor(SafetyConfig(
            command_timeout_s=p["command_timeout_s"], state_timeout_s=p["state_timeout_s"],
            tilt_limit_rad=p["tilt_limit_rad"]), self.space)
        standup = StandUpSequence(StandUpConfig(
            damping_s=p["standup_damping_s"], ramp_s=p["standup_ramp_s"],
            control_dt=self.control_dt))
        self.loop = ControlLoop(self.client, self.controller, monitor, standup)
        if p["lowcmd_stream_hz"] > 0:
            self.client.start_streaming()
        self.loop.start()
        self.get_logger().info("active: standing up, then tracking /more/command")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._damp()
        self.get_logger().info("inactive: motors damped")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _damp(self) -> None:
        """Stop the control loop and leave the motors damped, never on the last target."""
        if self.loop is not None:
            self.loop.stop()
            self.client.send(MotorCommand.damping(self.loop.monitor.config.damping_kd))
            self.loop = None

    def _release(self) -> None:
        self._damp()
        if self.client is not None:
            self.client.close()
        self.client = self.controller = None

    # -- inputs ------------------------------------------------------------------------------
    def _on_command(self, msg: Go2Command) -> None:
        loop = self.loop
        if loop is None:  # not active: nothing drives the motors
            return
        try:
            values = self.space.from_go2_command(msg)
        except ActionSpaceError as e:
            self.get_logger().warning(f"rejecting command: {e}", throttle_duration_sec=1.0)
            loop.set_command(np.full(len(self.space), np.nan))  # counted as rejected
            return
        if msg.terminate:  # the episode is over: stand still
            values = self.space.default_command()
        stamp_ns = stamp_to_ns(msg.header.stamp)
        age_s = (self.get_clock().now().nanoseconds - stamp_ns) / 1e9 if stamp_ns else 0.0
        if age_s > loop.monitor.config.command_timeout_s:
            self.get_logger().warning(f"command stamped {age_s:.3f} s ago, older than the "
                                      "command timeout: standing (clocks out of sync?)",
                                      throttle_duration_sec=1.0)
        loop.set_command(values, age_s)

    def _on_estop(self, msg: Bool) -> None:
        if msg.data and self.loop is not None:
            # logged by the monitor
            self.loop.estop("e-stop topic (deactivate + activate to clear)")

    # -- outputs -----------------------------------------------------------------------------
    def phase(self) -> str:
        if self.client is None:
            return "unconfigured"
        if self.loop is None:
            return "inactive (damped)"
        if self.loop.monitor.status.fault is not None:
            return "damping"
        if self.client.last_receive_time() is None:
            return "waiting for LowState"
        return "standing up" if not self.loop.stand_up.done else "walking"

    def _publish_joint_states(self) -> None:
        client = self.client
        state = client.latest_state() if client is not None else None
        if state is None:
            return
        self._max_state_age = max(self._max_state_age, client.age())
        joints = JointState()
        now = self.get_clock().now()
        joints.header.stamp = now.to_msg()
        joints.name = list(JOINT_NAMES)
        joints.position = [float(v) for v in state.q]
        joints.velocity = [float(v) for v in state.dq]
        joints.effort = [float(v) for v in state.tau]
        self.joint_pub.publish(joints)
        self.imu_pub.publish(imu_message(state, joints.header.stamp))
        if self.odom_pub is not None:
            self._publish_odometry(state, client.last_receive_time(), now)

    def _publish_odometry(self, state, received: float | None, now) -> None:
        # One estimate per stamp: tf2 rejects repeated stamps, and under use_sim_time the
        # clock moves in /clock steps, which can be slower than these wall-clock ticks. Each
        # new LowState is integrated once (a lost robot's last state is not motion) over the
        # node clock: the joint velocities are per second of the robot's (the sim's) time.
        now_ns, last = now.nanoseconds, self._last_odometry_ns
        if last is not None and now_ns <= last:
            return
        self._last_odometry_ns = now_ns
        if received != self._odometry_state_time:
            self._odometry_state_time = received
            dt = 0.0 if last is None else (now_ns - last) / 1e9
            self.odometry.update(state, min(dt, MAX_ODOMETRY_STEP_S))
        est = self.odometry.estimate
        odom = odometry_message(est.position, est.quat, est.linear_velocity,
                                est.angular_velocity, now.to_msg())
        self.odom_pub.publish(odom)
        if self.tf is not None:
            self.tf.send(odometry_transform(odom))

    def _publish_diagnostics(self) -> None:
        loop, client = self.loop, self.client
        phase = self.phase()
        if loop is None or client is None:  # unconfigured or inactive: nothing to report on
            self._publish_status(DiagnosticStatus.WARN, phase, {"phase": phase})
            return
        monitor, stats = loop.monitor, client.stats
        status = monitor.status
        fault, detail = status.fault, status.detail
        active = monitor.active_command(loop.clock())  # also refreshes command_timed_out
        timed_out = status.command_timed_out
        rejected, clamped = status.rejected_commands, status.clamped_commands
        values = {
            "phase": phase, "fault": fault.value if fault else "", "fault_detail": detail,
            "action_space": self.params["action_space"] or "default",
            "command_timed_out": str(timed_out), "rejected_commands": str(rejected),
            "clamped_commands": str(clamped),
            "lowstate_age_ms": f"{1e3 * client.age():.1f}",
            "lowstate_max_age_ms": f"{1e3 * self._max_state_age:.1f}",
            "lowstate_received": str(stats.received), "lowstate_bad_crc": str(stats.bad_crc),
            "lowcmd_sent": str(stats.sent), "control_ticks": str(loop.stats.ticks),
            "tick_errors": str(loop.stats.errors),
        }
        values.update({f"active_{n}": f"{v:.4f}" for n, v in zip(self.space.names, active)})
        self._max_state_age = 0.0
        if fault is not None:
            self._publish_status(DiagnosticStatus.ERROR, f"fault: {fault.value}", values)
        elif phase != "walking":
            self._publish_status(DiagnosticStatus.WARN, phase, values)
        elif timed_out:
            self._publish_status(DiagnosticStatus.WARN, "no fresh command: standing", values)
        else:
            self._publish_status(DiagnosticStatus.OK, "tracking commands", values)

    def _publish_status(self, level: bytes, message: str, values: dict[str, str]) -> None:
        diag = DiagnosticStatus(name="more_controller", hardware_id="unitree_go2",
                                level=level, message=message)
        diag.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray(status=[diag])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(array)

    def destroy_node(self) -> None:
        self._release()  # whatever state it is in: motors damped, DDS closed
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    from more_policy.nodes.runner import autostart, node_main

    node_main(lambda: autostart(ControllerNode()), args)


if __name__ == "__main__":
    main()
