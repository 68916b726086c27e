"""MuJoCo physics as a Go2 on DDS: rt/lowstate out every physics step, rt/lowcmd in.

The controller cannot tell it from the robot: same topics, same message types, same CRC. The
bridge steps the physics in real time (``physics_dt`` per step, 500 Hz at the default 2 ms)
and applies the latest LowCmd through the motor PD law at every step.

Run it as its own process (what the DDS tests and the bench do)::

    python -m more_policy.robot.sim_bridge --domain 17 --seconds 20 --log trajectory.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

import numpy as np

from more_policy.robot.go2 import LYING_JOINT_POS, MotorCommand
from more_policy.robot.go2_io import Go2IOConfig, Go2RobotEndpoint

LYING_BASE_HEIGHT = 0.13  # trunk height with the legs folded (LYING_JOINT_POS)


@dataclass
class SimBridgeConfig:
    physics_dt: float = 0.002  # one LowState per physics step: 500 Hz like the Go2
    realtime: bool = True
    start_lying: bool = False  # start folded on the floor (the safe stand-up's start)
    log_every: int = 10  # physics steps between trajectory samples


class Go2SimBridge:
    def __init__(self, io: Go2IOConfig | None = None, config: SimBridgeConfig | None = None,
                 physics=None):
        from more_policy.sim import go2_mjcf
        from more_policy.sim.physics import Go2Physics

        self.config = config or SimBridgeConfig()
        self.physics = physics or Go2Physics(go2_mjcf.build_mjcf(
            timestep=self.config.physics_dt))
        if self.config.start_lying:
            self.physics.reset(base_pos=[0.0, 0.0, LYING_BASE_HEIGHT], joint_pos=LYING_JOINT_POS)
        # The motors idle (no stiffness, light damping) until the first LowCmd arrives.
        self.physics.apply(MotorCommand.damping(kd=0.5))
        self.endpoint = Go2RobotEndpoint(io or Go2IOConfig(), on_command=self._on_command)
        self._pending: MotorCommand | None = None
        self.last_command: MotorCommand | None = None
        self.trajectory: list[list[float]] = []  # [time, x, y, z, yaw]

    def _on_command(self, cmd: MotorCommand) -> None:
        self._pending = cmd  # applied by the physics thread at its next step
        self.last_command = cmd

    def step(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self.physics.apply(pending)
        self.physics.step(1)
        self.endpoint.publish(self.physics.state())

    def run(self, seconds: float) -> None:
        steps = int(round(seconds / self.physics.physics_dt))
        start = time.perf_counter()
        for k in range(steps):
            self.step()
            if k % self.config.log_every == 0:
                pos, _ = self.physics.base_pose()
                yaw, _ = self.physics.base_yaw_pitch()
                self.trajectory.append([self.physics.time, *map(float, pos), yaw])
            if self.config.realtime:
                delay = start + (k + 1) * self.physics.physics_dt - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)

    def close(self) -> None:
        self.endpoint.close()
        self.physics.close()


class PhysicsLink:
    """The control loop's robot link straight onto Go2Physics, without DDS: every ``send``
    applies the command and advances the physics by one control period. With
    ``ControlLoop(..., clock=link.clock)`` a loop runs deterministically in simulated time."""

    def __init__(self, physics, control_dt: float = 0.02):
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="MuJoCo Go2 on rt/lowstate + rt/lowcmd (DDS)")
    p.add_argument("--domain", type=int, default=0, help="DDS domain id")
    p.add_argument("--interface", default="lo", help="network interface (lo: loopback)")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--physics-dt", type=float, default=0.002)
    p.add_argument("--start-lying", action="store_true")
    p.add_argument("--wait-controller", type=float, default=10.0,
                   help="seconds to wait for the first LowCmd before the clock starts")
    p.add_argument("--log", help="write the base trajectory and link counters here (JSON)")
    args = p.parse_args(argv)
    bridge = Go2SimBridge(Go2IOConfig(domain_id=args.domain, interface=args.interface),
                          SimBridgeConfig(physics_dt=args.physics_dt,
                                          start_lying=args.start_lying))
    end = time.monotonic() + args.wait_controller
    while bridge.endpoint.stats.received == 0 and time.monotonic() < end:
        bridge.endpoint.publish(bridge.physics.state())  # let the controller see us
        time.sleep(bridge.physics.physics_dt)
    bridge.run(args.seconds)
    stats = bridge.endpoint.stats
    if args.log:
        with open(args.log, "w") as f:
            json.dump({"trajectory": bridge.trajectory, "commands_received": stats.received,
                       "bad_crc": stats.bad_crc, "states_sent": stats.sent,
                       "final_joint_pos": np.asarray(bridge.physics.joint_pos()).tolist(),
                       "last_command_kp": (None if bridge.last_command is None else
                                           np.asarray(bridge.last_command.kp).tolist())}, f)
    bridge.close()


if __name__ == "__main__":
    main()
