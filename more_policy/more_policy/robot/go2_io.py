"""Go2 low-level I/O over CycloneDDS through unitree_sdk2py: rt/lowstate in, rt/lowcmd out.

Two endpoints share the message conversions and the CRC:

* :class:`Go2Client` is the controller's side (what runs next to the robot): it subscribes to
  ``rt/lowstate`` (CRC-checked, converted to :class:`RobotState`) and publishes ``rt/lowcmd``;
  :meth:`Go2Client.start_streaming` re-sends the latest command at 500 Hz, the rate the
  motor board expects, while the controller updates it at 50 Hz.
* :class:`Go2RobotEndpoint` is the robot's side, used by the MuJoCo sim bridge and tests: it
  publishes ``rt/lowstate`` and receives ``rt/lowcmd``.

Motor order is the SDK's (FR, FL, RR, RL; hip, thigh, calf), the order of go2.py. Before
sending low-level commands to a real Go2 its sport-mode service must be released:
:func:`release_sport_mode` does it through unitree_sdk2py's MotionSwitcherClient, as Unitree's
low-level examples do (and raises a clear error where the installed SDK lacks that client).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from more_policy.robot.go2 import NUM_MOTORS, MotorCommand, RobotState, sleep_until
from more_policy.robot.sdk_compat import go2_crc, init_channels, sdk

sdk()  # the SDK with its wheel workarounds, before anything imports from it

LOWCMD_TOPIC = "rt/lowcmd"
LOWSTATE_TOPIC = "rt/lowstate"
LOWCMD_HEAD = (0xFE, 0xEF)
LOWCMD_LEVEL_LOW = 0xFF  # low-level control
MOTOR_MODE_SERVO = 0x01  # PMSM servo mode (0x00 = off)
POS_STOP = 2.146e9  # Unitree's "no position target" sentinel for unused slots
VEL_STOP = 16000.0


@dataclass
class Go2IOConfig:
    """DDS settings shared by both endpoints."""

    domain_id: int = 0  # the Go2 uses domain 0
    interface: str | None = None  # NIC facing the robot, "lo" for loopback, None: auto
    lowcmd_topic: str = LOWCMD_TOPIC
    lowstate_topic: str = LOWSTATE_TOPIC
    stream_hz: float = 500.0
    check_crc: bool = True
    stream_stats_window: int = 30_000  # LowCmd stream periods kept for the figures (60 s)


# -- conversions ----------------------------------------------------------------------------
def _types():
    sdk()
    from unitree_sdk2py.idl.default import (
        unitree_go_msg_dds__LowCmd_,
        unitree_go_msg_dds__LowState_,
    )
    from unitree_sdk2py.idl.unitree_go.msg.dds_ import LowCmd_, LowState_
    return LowCmd_, LowState_, unitree_go_msg_dds__LowCmd_, unitree_go_msg_dds__LowState_


def new_lowcmd():
    """A LowCmd_ in low-level mode with every motor slot holding no target."""
    msg = _types()[2]()
    msg.head = list(LOWCMD_HEAD)
    msg.level_flag = LOWCMD_LEVEL_LOW
    for m in msg.motor_cmd:
        m.mode, m.q, m.dq, m.kp, m.kd, m.tau = MOTOR_MODE_SERVO, POS_STOP, VEL_STOP, 0.0, 0.0, 0.0
    msg.crc = go2_crc(msg)
    return msg


def fill_lowcmd(msg, cmd: MotorCommand):
    """Write a MotorCommand into the first 12 slots of ``msg`` and refresh its CRC."""
    for i in range(NUM_MOTORS):
        m = msg.motor_cmd[i]
        m.mode = MOTOR_MODE_SERVO
        m.q, m.dq, m.tau = float(cmd.q[i]), float(cmd.dq[i]), float(cmd.tau[i])
        m.kp, m.kd = float(cmd.kp[i]), float(cmd.kd[i])
    msg.crc = go2_crc(msg)
    return msg


def lowcmd_to_motor_command(msg) -> MotorCommand:
    motors = msg.motor_cmd[:NUM_MOTORS]
    return MotorCommand(q=np.array([m.q for m in motors]), kp=np.array([m.kp for m in motors]),
                        kd=np.array([m.kd for m in motors]), dq=np.array([m.dq for m in motors]),
                        tau=np.array([m.tau for m in motors]))


def new_lowstate():
    return _types()[3]()


def fill_lowstate(msg, state: RobotState):
    """Write a RobotState into ``msg`` (IMU, motors, foot forces, tick) and refresh its CRC."""
    imu = msg.imu_state
    imu.quaternion = [float(v) for v in state.quat]
    imu.gyroscope = [float(v) for v in state.gyro]
    imu.accelerometer = [float(v) for v in state.accel]
    for i in range(NUM_MOTORS):
        m = msg.motor_state[i]
        m.mode = MOTOR_MODE_SERVO
        m.q, m.dq, m.tau_est = float(state.q[i]), float(state.dq[i]), float(state.tau[i])
    msg.foot_force = [int(np.clip(f, -32768, 32767)) for f in state.foot_force]
    msg.tick = int(state.tick) & 0xFFFFFFFF
    msg.crc = go2_crc(msg)
    return msg


def lowstate_to_robot_state(msg) -> RobotState:
    motors = msg.motor_state[:NUM_MOTORS]
    imu = msg.imu_state
    return RobotState(q=np.array([m.q for m in motors]), dq=np.array([m.dq for m in motors]),
                      tau=np.array([m.tau_est for m in motors]),
                      quat=np.array(imu.quaternion, dtype=np.float64),
                      gyro=np.array(imu.gyroscope, dtype=np.float64),
                      accel=np.array(imu.accelerometer, dtype=np.float64),
                      foot_force=np.array(msg.foot_force, dtype=np.float64), tick=int(msg.tick))


# -- endpoints ------------------------------------------------------------------------------
@dataclass
class LinkStats:
    """Counters for one direction of the link."""

    received: int = 0
    bad_crc: int = 0
    sent: int = 0
    last_receive_time: float | None = None  # time.monotonic()


class _Endpoint:
    def __init__(self, config: Go2IOConfig, send_topic: str, send_type, recv_topic: str,
                 recv_type, on_receive: Callable | None):
        init_channels(config.domain_id, config.interface)
        from unitree_sdk2py.core.channel import ChannelPublisher, ChannelSubscriber

        self.config = config
        self.stats = LinkStats()
        # Two locks: the DDS listener thread only ever takes _lock (briefly, to store what
        # arrived); writers take _write_lock. A writer blocked inside DDS therefore never
        # stalls the thread that delivers incoming data (and acknowledgements).
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._latest = None
        self._on_receive = on_receive
        self._publisher = ChannelPublisher(send_topic, send_type)
        self._publisher.Init()
        self._subscriber = ChannelSubscriber(recv_topic, recv_type)
        self._subscriber.Init(self._handle, 0)

    def _handle(self, msg) -> None:
        if self.config.check_crc and go2_crc(msg) != msg.crc:
            self.stats.bad_crc += 1
            return
        value = self._convert(msg)
        with self._lock:
            self._latest = value
            self.stats.received += 1
            self.stats.last_receive_time = time.monotonic()
        if self._on_receive is not None:
            self._on_receive(value)

    def _convert(self, msg):
        raise NotImplementedError

    def _write(self, msg) -> None:
        self._publisher.Write(msg)
        self.stats.sent += 1

    def age(self) -> float:
        """Seconds since the last valid message (inf before the first)."""
        t = self.stats.last_receive_time
        return float("inf") if t is None else time.monotonic() - t

    def last_receive_time(self) -> float | None:
        """time.monotonic() of the last valid message (None before the first)."""
        return self.stats.last_receive_time

    def wait_for_first(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while self.stats.received == 0 and time.monotonic() < end:
            time.sleep(0.002)
        return self.stats.received > 0

    def close(self) -> None:
        self._subscriber.Close()
        self._publisher.Close()


class Go2Client(_Endpoint):
    """Controller side: latest RobotState from rt/lowstate, MotorCommand out on rt/lowcmd."""

    def __init__(self, config: Go2IOConfig | None = None,
                 on_state: Callable[[RobotState], None] | None = None):
        LowCmd_, LowState_, _, _ = _types()
        config = config or Go2IOConfig()
        super().__init__(config, config.lowcmd_topic, LowCmd_, config.lowstate_topic,
                         LowState_, on_state)
        self._msg = new_lowcmd()
        self._command: MotorCommand | None = None
        self._stream_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._stream_times = np.zeros(config.stream_stats_window)  # perf_counter per send
        self._stream_count = 0

    def _convert(self, msg) -> RobotState:
        return lowstate_to_robot_state(msg)

    def latest_state(self) -> RobotState | None:
        with self._lock:
            return self._latest

    def send(self, cmd: MotorCommand) -> None:
        """Publish ``cmd`` now; with streaming on it is also what the 500 Hz thread repeats."""
        with self._write_lock:
            self._command = cmd
            self._write(fill_lowcmd(self._msg, cmd))

    def start_streaming(self) -> None:
        """Repeat the latest command at ``stream_hz`` in a dedicated thread."""
        if self._stream_thread is not None:
            return
        self._stop.clear()
        self._stream_thread = threading.Thread(target=self._stream, name="go2_lowcmd",
                                               daemon=True)
        self._stream_thread.start()

    def _stream(self) -> None:
        # Nothing is allocated per period by this loop: the message is filled in place by
        # send(), and the send times go into a preallocated ring.
        period = 1.0 / self.config.stream_hz
        times, n = self._stream_times, len(self._stream_times)
        next_time = time.perf_counter()
        while not self._stop.is_set():
            with self._write_lock:
                if self._command is not None:
                    self._write(self._msg)  # CRC already refreshed by send()
            times[self._stream_count % n] = time.perf_counter()
            self._stream_count += 1
            next_time += period
            if next_time < time.perf_counter():  # fell behind: do not burst to catch up
                next_time = time.perf_counter()
                continue
            sleep_until(next_time)

    def stream_periods_ms(self) -> np.ndarray:
        """The LowCmd stream's recent periods [ms], oldest first (at most the stats window)."""
        n, count = len(self._stream_times), self._stream_count
        times = self._stream_times[:count] if count <= n else np.roll(
            self._stream_times, -(count % n))
        return np.diff(times) * 1e3

    def close(self) -> None:
        self._stop.set()
        if self._stream_thread is not None:
            self._stream_thread.join(timeout=1.0)
            self._stream_thread = None
        super().close()


class Go2RobotEndpoint(_Endpoint):
    """Robot side (sim bridge, tests): RobotState out on rt/lowstate, commands in."""

    def __init__(self, config: Go2IOConfig | None = None,
                 on_command: Callable[[MotorCommand], None] | None = None):
        LowCmd_, LowState_, _, _ = _types()
        config = config or Go2IOConfig()
        super().__init__(config, config.lowstate_topic, LowState_, config.lowcmd_topic,
                         LowCmd_, on_command)
        self._msg = new_lowstate()

    def _convert(self, msg) -> MotorCommand:
        return lowcmd_to_motor_command(msg)

    def latest_command(self) -> MotorCommand | None:
        with self._lock:
            return self._latest

    def publish(self, state: RobotState) -> None:
        with self._write_lock:
            self._write(fill_lowstate(self._msg, state))



class SportModeError(RuntimeError):
    """The Go2's sport-mode controller could not be checked or released."""


def release_sport_mode(config: Go2IOConfig | None = None, timeout_s: float = 5.0,
                       attempts: int = 5) -> str:
    """Make sure no Unitree motion-control service drives the motors before low-level control:
    check the active mode with MotionSwitcherClient; if one is active, lie the robot down
    (SportClient.StandDown) and release it, as Unitree's low-level examples do. Returns the
    mode that was active ('' if none). Raises :class:`SportModeError` when the SDK has no
    MotionSwitcherClient, the service does not answer, or the mode stays active."""
    config = config or Go2IOConfig()
    init_channels(config.domain_id, config.interface)
    try:
        from unitree_sdk2py.comm.motion_switcher.motion_switcher_client import (
            MotionSwitcherClient,
        )
    except ImportError as e:
        raise SportModeError(
            "the installed unitree_sdk2py has no MotionSwitcherClient (the PyPI unitree-sdk2 "
            "1.0.1 wheel lacks unitree_sdk2py.comm.motion_switcher): install "
            "unitree_sdk2_python from github.com/unitreerobotics, or switch sport mode off in "
            "the Unitree app and set the controller's release_sport_mode parameter to false"
        ) from e
    from unitree_sdk2py.go2.sport.sport_client import SportClient

    switcher = MotionSwitcherClient()
    switcher.SetTimeout(timeout_s)
    switcher.Init()
    code, result = switcher.CheckMode()
    if code != 0 or result is None:
        raise SportModeError(f"MotionSwitcherClient.CheckMode failed (code {code}): is the Go2 "
                             f"on DDS domain {config.domain_id} via {config.interface}?")
    active = result.get("name", "")
    for _ in range(attempts):
        if not result.get("name"):
            return active
        sport = SportClient()
        sport.SetTimeout(timeout_s)
        sport.Init()
        sport.StandDown()
        switcher.ReleaseMode()
        time.sleep(1.0)
        code, result = switcher.CheckMode()
        result = result or {}
    raise SportModeError(f"the Go2's {result.get('name')!r} mode is still active after "
                         f"{attempts} releases")
