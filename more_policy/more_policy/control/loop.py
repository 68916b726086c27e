"""The 50 Hz control loop: rt/lowstate -> safety -> controller -> rt/lowcmd.

It starts with the safe stand-up (damping, then a soft ramp to the stand pose) and then hands
over to the gait controller (analytic or walk-these-ways), every tick guarded by the safety
monitor. The 12-d MoRE command arrives through :meth:`ControlLoop.set_command` from any thread.
Used by the controller node, the DDS sim tests and bench/bench_control.py.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from more_policy.control.safety import SafeController, SafetyMonitor
from more_policy.control.stand import StandUpSequence
from more_policy.robot.go2 import LowLevelController, MotorCommand, RobotState, sleep_until


class LowLevelLink(Protocol):
    """What the loop needs from the robot link (:class:`~more_policy.robot.go2_io.Go2Client`)."""

    def latest_state(self) -> RobotState | None: ...

    def last_receive_time(self) -> float | None: ...

    def send(self, cmd: MotorCommand) -> None: ...


STATS_WINDOW = 30_000  # ticks kept for the jitter figures: 10 min at 50 Hz


@dataclass
class LoopStats:
    ticks: int = 0
    errors: int = 0  # ticks whose controller raised (each one damped the motors)
    # monotonic start of, and time spent inside, each of the last STATS_WINDOW ticks
    tick_times: deque[float] = field(default_factory=lambda: deque(maxlen=STATS_WINDOW))
    compute_s: deque[float] = field(default_factory=lambda: deque(maxlen=STATS_WINDOW))

    def period_jitter_ms(self) -> tuple[float, float]:
        """(p50, p99) of |period - nominal| in ms over the recorded ticks."""
        periods = np.diff(np.asarray(self.tick_times))
        if periods.size == 0:
            return float("nan"), float("nan")
        nominal = np.median(periods)
        jitter = np.abs(periods - nominal) * 1e3
        return float(np.percentile(jitter, 50)), float(np.percentile(jitter, 99))


class ControlLoop:
    def __init__(self, link: LowLevelLink, controller: LowLevelController,
                 monitor: SafetyMonitor | None = None,
                 stand_up: StandUpSequence | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_error: Callable[[Exception], None] | None = None):
        self.link = link
        self.safe = SafeController(controller, monitor)
        self.monitor = self.safe.monitor
        self.stand_up = stand_up
        self.control_dt = controller.control_dt
        self.clock = clock
        self.on_error = on_error
        self.stats = LoopStats()
        self.last_command: MotorCommand | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- inputs from other threads -------------------------------------------------------
    def set_command(self, command: np.ndarray, age_s: float = 0.0) -> np.ndarray | None:
        """``age_s``: how long before now the command was produced (its message stamp), so
        the command timeout runs from then: a command held up in a busy executor stops the
        robot no later than a lost one (negative ages, clock skew, count as 0)."""
        with self._lock:
            return self.monitor.set_command(command, self.clock() - max(0.0, age_s))

    def estop(self, reason: str = "operator") -> None:
        with self._lock:
            self.monitor.estop(self.clock(), reason)

    # -- one tick ------------------------------------------------------------------------
    def tick(self) -> MotorCommand:
        """One control step. A controller that raises latches an e-stop and damps the motors:
        the link keeps re-sending the last command, which must never be a stale target."""
        start = self.clock()
        error = None
        with self._lock:
            try:
                cmd = self._compute(start)
            except Exception as e:
                error = e
                self.stats.errors += 1
                self.monitor.estop(start, f"controller error: {type(e).__name__}: {e}")
                cmd = MotorCommand.damping(self.monitor.config.damping_kd)
            self.link.send(cmd)
            self.last_command = cmd
        if error is not None and self.on_error is not None:
            self.on_error(error)
        self.stats.ticks += 1
        self.stats.tick_times.append(start)
        self.stats.compute_s.append(self.clock() - start)
        return cmd

    def _compute(self, now: float) -> MotorCommand:
        received = self.link.last_receive_time()
        if received is not None:
            self.monitor.state_received(received)
        state = self.link.latest_state()
        if received is None:  # nothing heard from the robot yet: damp, latch nothing
            return MotorCommand.damping(self.monitor.config.damping_kd)
        if self.stand_up is not None and not self.stand_up.done:
            fault = self.monitor.check(state, now)
            return (MotorCommand.damping(self.monitor.config.damping_kd) if fault
                    else self.stand_up.step(state))
        return self.safe.step(state, now)

    # -- real-time thread ----------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="control_loop", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        next_time = time.perf_counter()
        while not self._stop.is_set():
            self.tick()
            next_time += self.control_dt
            if next_time < time.perf_counter():  # overran: restart the grid, no burst
                next_time = time.perf_counter()
                continue
            sleep_until(next_time)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
