"""MuJoCo physics as a Go2 on DDS: rt/lowstate out every physics step, rt/lowcmd in.

The controller cannot tell it from the robot: same topics, same message types, same CRC. One
loop steps the physics in (scaled) real time and applies the latest LowCmd through the motor
PD law at every step. ``more sim-bridge`` runs it on a bare Go2; go2_sim_node runs it on a task
scene's physics and adds the camera and the episode report.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from more_policy.robot.go2 import LYING_JOINT_POS, MotorCommand
from more_policy.robot.go2_io import Go2IOConfig, Go2RobotEndpoint
from more_policy.sim import go2_mjcf
from more_policy.sim.physics import Go2Physics

LYING_BASE_HEIGHT = 0.13  # trunk height with the legs folded (LYING_JOINT_POS)
log = logging.getLogger(__name__)


@dataclass
class SimBridgeConfig:
    physics_dt: float = 0.002  # of a physics the bridge builds: 500 Hz LowState like the Go2
    real_time_factor: float = 1.0  # sim seconds per wall second (an upper bound)
    # Physics steps per wake-up after a stall; beyond that sim time falls behind wall time
    # instead of jumping (None: always catch up with wall time).
    max_catch_up_steps: int | None = None
    start_lying: bool = False  # a built physics starts folded on the floor (stand-up's start)
    log_every: int = 10  # physics steps between trajectory samples (0: no trajectory)

    def __post_init__(self) -> None:
        if not (self.physics_dt > 0 and self.real_time_factor > 0 and self.log_every >= 0):
            raise ValueError(f"need physics_dt > 0, real_time_factor > 0, log_every >= 0: {self}")
        if self.max_catch_up_steps is not None and self.max_catch_up_steps < 1:
            raise ValueError(f"max_catch_up_steps must be >= 1 or None, got "
                             f"{self.max_catch_up_steps}")


class Go2SimBridge:
    """The physics behind a Go2RobotEndpoint. Without ``physics`` it builds a bare Go2 whose
    motors idle (light damping) until the first LowCmd; a given physics (a task scene) keeps
    the command its owner set. ``after_step`` runs after every physics step under
    :attr:`lock`, which other threads take to read a consistent physics state."""

    def __init__(self, io: Go2IOConfig | None = None, config: SimBridgeConfig | None = None,
                 physics: Go2Physics | None = None, after_step: Callable[[], None] | None = None,
                 on_bad_command: Callable[[ValueError], None] | None = None):
        self.config = config or SimBridgeConfig()
        self._owns_physics = physics is None
        if physics is None:
            physics = Go2Physics(go2_mjcf.build_mjcf(timestep=self.config.physics_dt))
            if self.config.start_lying:
                physics.reset(base_pos=[0.0, 0.0, LYING_BASE_HEIGHT], joint_pos=LYING_JOINT_POS)
            physics.apply(MotorCommand.damping(kd=0.5))
        self.physics = physics
        self.after_step = after_step
        self.on_bad_command = on_bad_command or (lambda e: log.warning("ignoring LowCmd: %s", e))
        self.lock = threading.Lock()
        self.endpoint = Go2RobotEndpoint(io or Go2IOConfig())
        self.last_command: MotorCommand | None = None  # the newest LowCmd received
        self.rejected_commands = 0
        self.trajectory: list[list[float]] = []  # [time, x, y, z, yaw] every log_every steps
        self._steps = 0

    def step(self) -> None:
        """One physics step under the newest LowCmd (a bad one keeps the previous), then
        LowState out."""
        command = self.endpoint.latest_command()
        with self.lock:
            if command is not None and command is not self.last_command:
                self.last_command = command
                try:
                    self.physics.apply(command)
                except ValueError as e:  # NaN or a bad shape on the wire
                    self.rejected_commands += 1
                    self.on_bad_command(e)
            self.physics.step(1)
            if self.after_step is not None:
                self.after_step()
            state = self.physics.state()
        self.endpoint.publish(state)
        if self.config.log_every and self._steps % self.config.log_every == 0:
            pos, _ = self.physics.base_pose()
            yaw, _ = self.physics.base_yaw_pitch()
            self.trajectory.append([self.physics.time, *map(float, pos), yaw])
        self._steps += 1

    def run(self, seconds: float | None = None, stop: Callable[[], bool] = lambda: False,
            after_batch: Callable[[], None] | None = None) -> None:
        """Step in (scaled) real time for ``seconds`` of sim time (None: no limit) or until
        ``stop()``; ``after_batch`` runs after each wake-up's steps."""
        rtf, dt = self.config.real_time_factor, self.physics.physics_dt
        cap = self.config.max_catch_up_steps
        remaining = math.inf if seconds is None else round(seconds / dt)
        start_wall, start_sim = time.perf_counter(), self.physics.time
        while remaining > 0 and not stop():
            target = start_sim + (time.perf_counter() - start_wall) * rtf
            steps = int((target - self.physics.time) / dt)
            if steps <= 0:
                time.sleep(min(dt, (self.physics.time + dt - target) / rtf))
                continue
            if cap is not None and steps > cap:  # too slow: let sim time fall behind
                start_sim -= (steps - cap) * dt
                steps = cap
            steps = int(min(steps, remaining))
            for _ in range(steps):
                self.step()
            remaining -= steps
            if after_batch is not None:
                after_batch()

    def wait_for_controller(self, timeout_s: float) -> bool:
        """Publish the resting state, clock stopped, until the first LowCmd arrives."""
        end = time.monotonic() + timeout_s
        while self.endpoint.stats.received == 0 and time.monotonic() < end:
            self.endpoint.publish(self.physics.state())
            time.sleep(self.physics.physics_dt)
        return self.endpoint.stats.received > 0

    def report(self) -> dict:
        """The trajectory and link counters (``more sim-bridge --log``)."""
        stats = self.endpoint.stats
        return {"trajectory": self.trajectory, "commands_received": stats.received,
                "bad_crc": stats.bad_crc, "states_sent": stats.sent,
                "rejected_commands": self.rejected_commands,
                "final_joint_pos": np.asarray(self.physics.joint_pos()).tolist(),
                "last_command_kp": (None if self.last_command is None else
                                    np.asarray(self.last_command.kp).tolist())}

    def close(self) -> None:
        """Close the endpoint, and the physics if the bridge built it."""
        self.endpoint.close()
        if self._owns_physics:
            self.physics.close()


class PhysicsLink:
    """The control loop's robot link straight onto Go2Physics, without DDS: every ``send``
    applies the command and advances the physics by one control period. With
    ``ControlLoop(..., clock=link.clock)`` a loop runs deterministically in simulated time."""

    def __init__(self, physics: Go2Physics, control_dt: float = 0.02):
        self.physics = physics
        self.substeps = max(1, int(round(control_dt / physics.physics_dt)))
        self._state_time = physics.time

    def clock(self) -> float:
        return self.physics.time

    def latest_state(self):
        self._state_time = self.physics.time
        return self.physics.state()

    def last_receive_time(self) -> float:
        return self._state_time

    def send(self, cmd: MotorCommand) -> None:
        self.physics.apply(cmd)
        self.physics.step(self.substeps)
