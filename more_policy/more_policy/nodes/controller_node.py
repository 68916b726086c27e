"""controller_node: /more/command -> low-level controller at 50 Hz -> rt/lowcmd (Go2 or sim).

The control loop runs on its own thread at ``control_rate_hz``: it reads the newest LowState
from :class:`~more_policy.robot.go2_io.Go2Client`, runs the safe start
(:class:`~more_policy.control.stand.StandUpSequence`) and then the gait controller (analytic or
walk-these-ways) wrapped by :class:`~more_policy.control.safety.SafeController`, and sends the
motor command. The safety monitor owns the fail-safe behaviour: a stale command ramps to a
stand, a stale LowState, tilt or joint limit or an e-stop latches damping (restart the node to
clear). A command with terminate set is replaced by the stand command.

The DDS domain and network interface select the robot (domain 0, its NIC) or the sim
(loopback, its own domain). Publishes sensor_msgs/JointState every tick and
diagnostic_msgs/DiagnosticArray at ``diagnostics_rate_hz``.
"""

from __future__ import annotations

import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool

from more_msgs.msg import Go2Command
from more_policy.actions import ActionSpace, ActionSpaceError
from more_policy.control.safety import SafeController, SafetyConfig, SafetyMonitor
from more_policy.control.stand import StandUpConfig, StandUpSequence
from more_policy.nodes.interfaces import COMMAND_QOS, STATUS_QOS, ParamSpec, declare_parameters
from more_policy.nodes.messages import COMMAND_TOPIC, DIAGNOSTICS_TOPIC, JOINT_STATES_TOPIC
from more_policy.robot.go2 import JOINT_NAMES, MotorCommand

CONTROLLERS = ("analytic", "wtw")

PARAMETERS = (
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
    ParamSpec("diagnostics_topic", DIAGNOSTICS_TOPIC, "diagnostic_msgs/DiagnosticArray topic"),
    ParamSpec("control_rate_hz", 50.0, "control loop rate [Hz] (walk-these-ways: 50)"),
    ParamSpec("diagnostics_rate_hz", 2.0, "diagnostics publishing rate [Hz]"),
    ParamSpec("command_timeout_s", 0.5, "no command for this long -> ramp to a stand [s]"),
    ParamSpec("stop_ramp_s", 0.5, "duration of the ramp to a stand after a timeout [s]"),
    ParamSpec("state_timeout_s", 0.1, "no LowState for this long -> damping (latched) [s]"),
    ParamSpec("tilt_limit_rad", 0.8, "roll/pitch beyond this -> damping (latched) [rad]"),
    ParamSpec("standup_damping_s", 1.0, "safe start: pure damping for this long [s]"),
    ParamSpec("standup_ramp_s", 2.0, "safe start: ramp to the stand pose over this long [s]"),
    ParamSpec("first_state_timeout_s", 30.0,
              "wait this long for the first LowState before giving up [s]"),
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


class ControllerNode(Node):
    """Thin rclpy wrapper around Go2Client + StandUpSequence + SafeController."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__("controller_node", **node_kwargs)
        from more_policy.robot.go2_io import Go2Client, Go2IOConfig

        p = self.params = declare_parameters(self, PARAMETERS)
        if not p["control_rate_hz"] > 0:
            raise ValueError(f"control_rate_hz must be > 0, got {p['control_rate_hz']}")
        self.control_dt = 1.0 / p["control_rate_hz"]
        self.space = ActionSpace()
        controller = build_controller(p["controller"], p["wtw_checkpoint"], self.control_dt,
                                      self.space)
        self.monitor = SafetyMonitor(SafetyConfig(
            command_timeout_s=p["command_timeout_s"], stop_ramp_s=p["stop_ramp_s"],
            state_timeout_s=p["state_timeout_s"], tilt_limit_rad=p["tilt_limit_rad"]),
            self.space)
        self.safe = SafeController(controller, self.monitor)
        self.standup = StandUpSequence(StandUpConfig(
            damping_s=p["standup_damping_s"], ramp_s=p["standup_ramp_s"],
            control_dt=self.control_dt))
        self.client = Go2Client(Go2IOConfig(
            domain_id=p["dds_domain_id"], interface=p["network_interface"] or None,
            stream_hz=p["lowcmd_stream_hz"] or 500.0))
        if p["lowcmd_stream_hz"] > 0:
            self.client.start_streaming()

        self.phase = "waiting for LowState"
        self._lock = threading.Lock()  # monitor inputs come from callbacks, outputs from the loop
        self._stop = threading.Event()
        self._start_time = time.monotonic()
        self._active = self.space.default_command()
        self._max_state_age = 0.0  # since the last diagnostics message [s]
        self.joint_pub = self.create_publisher(JointState, p["joint_states_topic"], STATUS_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, p["diagnostics_topic"], STATUS_QOS)
        self.create_subscription(Go2Command, p["command_topic"], self._on_command, COMMAND_QOS)
        self.create_subscription(Bool, p["estop_topic"], self._on_estop, COMMAND_QOS)
        self.create_timer(1.0 / p["diagnostics_rate_hz"], self._publish_diagnostics)
        self._thread = threading.Thread(target=self._control_loop, name="more_control",
                                        daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"{p['controller']} controller at {p['control_rate_hz']:g} Hz on DDS domain "
            f"{p['dds_domain_id']} ({p['network_interface'] or 'auto'})")

    # -- inputs ------------------------------------------------------------------------------
    def _on_command(self, msg: Go2Command) -> None:
        try:
            values = self.space.from_go2_command(msg)
        except ActionSpaceError as e:
            self.get_logger().warning(f"rejecting command: {e}", throttle_duration_sec=1.0)
            with self._lock:
                self.monitor.status.rejected_commands += 1
            return
        if msg.terminate:  # the episode is over: stand still
            values = self.space.default_command()
        with self._lock:
            self.monitor.set_command(values, time.monotonic())

    def _on_estop(self, msg: Bool) -> None:
        if msg.data:
            with self._lock:
                self.monitor.estop(time.monotonic(), "e-stop topic")
            self.get_logger().error("E-STOP: motors damped; restart the node to clear")

    # -- control loop thread -----------------------------------------------------------------
    def _control_loop(self) -> None:
        next_tick = time.perf_counter()
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as e:  # never leave the motors on a stale command: damp, go on
                self.get_logger().error(f"control tick failed: {type(e).__name__}: {e}",
                                        throttle_duration_sec=1.0)
                self.client.send(MotorCommand.damping(self.monitor.config.damping_kd))
            next_tick += self.control_dt
            delay = next_tick - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:  # overran: skip ahead instead of bursting
                next_tick = time.perf_counter()

    def _tick(self) -> None:
        now = time.monotonic()
        state = self.client.latest_state()
        with self._lock:
            if state is None:  # nothing heard yet: damp and wait (no fault latched yet)
                if now - self._start_time > self.params["first_state_timeout_s"]:
                    self.monitor.check(None, now)
                    self.phase = "damping"
                cmd = MotorCommand.damping(self.monitor.config.damping_kd)
            else:
                self.monitor.state_received(self.client.stats.last_receive_time)
                self._max_state_age = max(self._max_state_age, self.client.age())
                if not self.standup.done:
                    fault = self.monitor.check(state, now)
                    self.phase = "standing up" if fault is None else "damping"
                    cmd = (self.monitor.limit(self.standup.step(state), state) if fault is None
                           else MotorCommand.damping(self.monitor.config.damping_kd))
                else:
                    cmd = self.safe.step(state, now)
                    self.phase = "damping" if self.monitor.status.fault else "walking"
                    self._active = self.monitor.active_command(now)
        self.client.send(cmd)
        if state is not None:
            joints = JointState()
            joints.header.stamp = self.get_clock().now().to_msg()
            joints.name = list(JOINT_NAMES)
            joints.position = [float(v) for v in state.q]
            joints.velocity = [float(v) for v in state.dq]
            joints.effort = [float(v) for v in state.tau]
            self.joint_pub.publish(joints)

    def _publish_diagnostics(self) -> None:
        with self._lock:
            status = self.monitor.status
            fault = status.fault
            active = self._active.copy()
            values = {
                "phase": self.phase,
                "fault": fault.value if fault else "",
                "fault_detail": status.detail,
                "command_timed_out": str(status.command_timed_out),
                "rejected_commands": str(status.rejected_commands),
                "clamped_commands": str(status.clamped_commands),
                "lowstate_age_ms": f"{1e3 * self.client.age():.1f}",
                "lowstate_max_age_ms": f"{1e3 * self._max_state_age:.1f}",
                "lowstate_received": str(self.client.stats.received),
                "lowstate_bad_crc": str(self.client.stats.bad_crc),
                "lowcmd_sent": str(self.client.stats.sent),
            }
            self._max_state_age = 0.0
        values.update({f"active_{n}": f"{v:.4f}" for n, v in zip(self.space.names, active)})
        diag = DiagnosticStatus(name="more_controller", hardware_id="unitree_go2")
        if fault is not None:
            diag.level, diag.message = DiagnosticStatus.ERROR, f"fault: {fault.value}"
        elif self.phase != "walking" or status.command_timed_out:
            diag.level = DiagnosticStatus.WARN
            diag.message = "no fresh command: standing" if self.phase == "walking" else self.phase
        else:
            diag.level, diag.message = DiagnosticStatus.OK, "tracking commands"
        diag.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray(status=[diag])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(array)

    def destroy_node(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        # Leave the motors damped, never on the last walking target.
        self.client.send(MotorCommand.damping(self.monitor.config.damping_kd))
        self.client.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    from more_policy.nodes.runner import spin_nodes

    rclpy.init(args=args)
    spin_nodes([ControllerNode()])


if __name__ == "__main__":
    main()
