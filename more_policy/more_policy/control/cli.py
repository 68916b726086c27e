"""`more control`: drive a Go2, or the simulated one of `more sim-bridge`, over DDS.

    more sim-bridge --domain 17 --start-lying &                  # a simulated robot
    more control --domain 17 --interface lo --vel-x 0.5 --seconds 10
    more control --interface enp3s0 --checkpoint wtw_ckpt/        # the real Go2 (domain 0)
"""

from __future__ import annotations

import argparse
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "control", help="safe stand-up, then hold a fixed command over rt/lowcmd (bring-up)")
    p.add_argument("--domain", type=int, default=0, help="DDS domain id (the Go2 uses 0)")
    p.add_argument("--interface", default=None, help="NIC facing the robot; lo for the sim")
    p.add_argument("--checkpoint", help="walk-these-ways checkpoint dir (default: the "
                   "analytic gait controller)")
    p.add_argument("--seconds", type=float, default=10.0, help="how long to hold the command")
    p.add_argument("--vel-x", type=float, default=0.0)
    p.add_argument("--vel-y", type=float, default=0.0)
    p.add_argument("--yaw-rate", type=float, default=0.0)
    p.add_argument("--body-height", type=float, default=0.0)
    p.add_argument("--no-stand-up", action="store_true", help="skip damping + ramp")
    p.add_argument("--wait-state", type=float, default=10.0,
                   help="seconds to wait for the first rt/lowstate")
    p.set_defaults(func=run_control)


def build_controller(checkpoint: str | None):
    if checkpoint:
        from more_policy.control.wtw import WalkTheseWaysRunner
        return WalkTheseWaysRunner.from_checkpoint(checkpoint)
    from more_policy.control.gait import GaitController
    return GaitController()


def run_control(args: argparse.Namespace) -> int:
    from more_policy.actions import ActionSpace
    from more_policy.control.loop import ControlLoop
    from more_policy.control.stand import StandUpSequence
    from more_policy.robot.go2_io import Go2Client, Go2IOConfig

    space = ActionSpace()
    command = space.default_command()
    for name, value in (("vel_x", args.vel_x), ("vel_y", args.vel_y),
                        ("yaw_rate", args.yaw_rate), ("body_height", args.body_height)):
        command[space.index(name)] = value
    controller = build_controller(args.checkpoint)
    client = Go2Client(Go2IOConfig(domain_id=args.domain, interface=args.interface))
    try:
        if not client.wait_for_first(args.wait_state):
            print(f"error: no rt/lowstate on domain {args.domain} within {args.wait_state} s "
                  "(robot on, cable in, right --interface / --domain?)")
            return 2
        stand_up = None if args.no_stand_up else StandUpSequence()
        loop = ControlLoop(client, controller, stand_up=stand_up)
        loop.start()
        while stand_up is not None and not stand_up.done:
            time.sleep(0.1)
        print(f"standing; holding {dict(zip(space.names, command.round(3)))}")
        end = time.monotonic() + args.seconds
        while time.monotonic() < end and loop.monitor.status.fault is None:
            loop.set_command(command)
            time.sleep(0.05)  # well inside the command timeout, even on a busy host
        loop.set_command(space.default_command())
        time.sleep(1.0)  # come to a stop
        loop.stop()
        status = loop.monitor.status
        if status.fault is not None:
            print(f"safety fault: {status.fault.value} ({status.detail}); motors damped")
            return 1
        p50, p99 = loop.stats.period_jitter_ms()
        print(f"done: {loop.stats.ticks} ticks, period jitter p50 {p50:.2f} ms p99 {p99:.2f} ms")
        return 0
    finally:
        from more_policy.robot.go2 import MotorCommand
        client.send(MotorCommand.damping())  # leave the motors damped, not stiff
        time.sleep(0.1)
        client.close()
