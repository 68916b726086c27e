"""Low-level control and Go2 I/O figures, each printed next to its target.

    python bench/bench_control.py            # 60 s I/O run, 20 s control loop
    python bench/bench_control.py --quick    # 5 s each (a smoke run)

1. CRC and message codec cost per message (fast vs the SDK / cyclonedds generic paths).
2. Controller compute per tick: analytic gait controller, walk-these-ways runner (TorchScript
   networks of the real shapes, random weights).
3. Go2 I/O over real DDS (loopback, two processes): LowState 500 Hz from a stand-in robot,
   LowCmd streamed at 500 Hz back (dedicated thread): period p50/p99 at the sender, received
   rate, loss, one-way latency.
4. The 50 Hz control loop (safety + gait controller) against the MuJoCo sim bridge over DDS:
   period jitter p50/p99 (target p99 <= 2 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "more_policy"))

from more_policy.actions import ActionSpace  # noqa: E402
from more_policy.control.gait import GaitController  # noqa: E402
from more_policy.control.loop import ControlLoop  # noqa: E402
from more_policy.control.safety import SafetyConfig, SafetyMonitor  # noqa: E402
from more_policy.robot.go2 import MotorCommand, RobotState  # noqa: E402
from more_policy.robot.go2_io import (  # noqa: E402
    Go2Client,
    Go2IOConfig,
    fill_lowcmd,
    fill_lowstate,
    new_lowcmd,
    new_lowstate,
)
from more_policy.robot.sdk_compat import go2_crc  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from common import Report  # noqa: E402


def per_call_us(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def bench_messages(report: Report) -> None:
    from unitree_sdk2py.utils.crc import CRC

    cmd = fill_lowcmd(new_lowcmd(), MotorCommand.damping())
    state = fill_lowstate(new_lowstate(), RobotState())
    reference = object.__new__(CRC)
    with contextlib.suppress(OSError):
        reference.__init__()  # the wheel lacks its native CRC library
    reference.platform = "pure-python"
    # 500 Hz leaves 2000 us per period for everything: CRC must be a small share of it.
    report.add("CRC LowCmd_ (fast)", per_call_us(lambda: go2_crc(cmd), 2000), "us", 200)
    report.add("CRC LowState_ (fast)", per_call_us(lambda: go2_crc(state), 2000), "us")
    report.add("CRC LowCmd_ (SDK pure-Python fallback)",
               per_call_us(lambda: reference.Crc(cmd), 20), "us")
    for name, msg in (("LowCmd_", cmd), ("LowState_", state)):
        cls, data = type(msg), msg.serialize()
        report.add(f"serialize {name} (fast)", per_call_us(msg.serialize, 2000), "us")
        report.add(f"serialize {name} (generic)",
                   per_call_us(lambda m=msg, c=cls: c.serialize.generic(m), 100), "us")
        report.add(f"deserialize {name} (fast)",
                   per_call_us(lambda c=cls, d=data: c.deserialize(d), 2000), "us")
        report.add(f"deserialize {name} (generic)",
                   per_call_us(lambda c=cls, d=data: c.deserialize.generic(c, d), 100), "us")


def bench_controllers(report: Report) -> None:
    import torch
    from torch import nn

    from more_policy.control.wtw import WalkTheseWaysRunner

    space = ActionSpace()
    command = space.default_command()
    command[space.index("vel_x")] = 0.5
    gait = GaitController()
    # a 50 Hz tick is 20000 us; the controller may take at most a quarter of it
    report.add("analytic gait controller per tick",
               per_call_us(lambda: gait.step(RobotState(), command), 500), "us", 5000)

    def mlp(sizes):
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ELU()]
        return torch.jit.script(nn.Sequential(*layers[:-1]))

    runner = WalkTheseWaysRunner(mlp([2100, 256, 128, 2]), mlp([2102, 512, 256, 128, 12]))
    report.add("walk-these-ways runner (TorchScript) per tick",
               per_call_us(lambda: runner.step(RobotState(), command), 300), "us", 5000)


def python_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "more_policy"),
                                                      env.get("PYTHONPATH")]))
    return env


def bench_io(report: Report, domain: int, seconds: float) -> None:
    """Go2 I/O over DDS on loopback, 500 Hz each way."""
    latencies: list[float] = []

    def on_state(state: RobotState) -> None:
        now_us = int(time.monotonic() * 1e6) & 0xFFFFFFFF
        latencies.append(((now_us - state.tick) & 0xFFFFFFFF) / 1e3)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peer.json"
        peer = subprocess.Popen([sys.executable, str(ROOT / "tests" / "robot_dds_peer.py"),
                                 "--domain", str(domain), "--seconds", str(seconds),
                                 "--out", str(out)], env=python_env())
        client = Go2Client(Go2IOConfig(domain_id=domain, interface="lo"), on_state=on_state)
        client.send(MotorCommand.damping())
        client.start_streaming()
        client.wait_for_first(20.0)
        start = time.monotonic()
        peer.wait()
        elapsed = time.monotonic() - start
        periods = client.stream_periods_ms()
        client.close()
        peer_report = json.loads(out.read_text())
    report.add("LowState lost", peer_report["sent"] - client.stats.received, "messages", 0)
    report.add("LowState rate", client.stats.received / elapsed, "Hz", 490,
               higher_is_better=True)
    report.add("LowCmd rate at the robot", peer_report["received"] / peer_report["elapsed_s"],
               "Hz", 490, higher_is_better=True)
    report.add("LowCmd stream period p50 (sender)", np.percentile(periods, 50), "ms", 2.05)
    report.add("LowCmd stream period p99 (sender)", np.percentile(periods, 99), "ms", 3.0)
    report.add("bad CRC (either side)", client.stats.bad_crc + peer_report["bad_crc"],
               "messages", 0)
    if latencies:
        report.add("one-way latency p50", np.percentile(latencies, 50), "ms")
        report.add("one-way latency p99", np.percentile(latencies, 99), "ms")


def bench_loop(report: Report, domain: int, seconds: float) -> None:
    """The 50 Hz control loop with the MuJoCo sim bridge over DDS."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "bridge.json"
        bridge = subprocess.Popen([sys.executable, "-m", "more_policy.sim.cli", "sim-bridge",
                                   "--domain", str(domain), "--seconds", str(seconds + 1),
                                   "--log", str(log)], env=python_env())
        client = Go2Client(Go2IOConfig(domain_id=domain, interface="lo"))
        loop = ControlLoop(client, GaitController(), SafetyMonitor(SafetyConfig(
            state_timeout_s=0.2)))
        client.wait_for_first(20.0)
        loop.start()
        space = ActionSpace()
        walk = space.default_command()
        walk[space.index("vel_x")] = 0.5
        end = time.monotonic() + seconds
        while time.monotonic() < end:  # the policy's 10 Hz
            loop.set_command(walk)
            time.sleep(0.1)
        loop.stop()
        bridge.wait()
        client.close()
        bridge_report = json.loads(log.read_text())
    p50, p99 = loop.stats.period_jitter_ms()
    compute = np.asarray(loop.stats.compute_s)[10:] * 1e3  # a deque: no slicing
    report.add("control loop ticks", loop.stats.ticks, "ticks")
    report.add("loop period jitter p50", p50, "ms")
    report.add("loop period jitter p99", p99, "ms", 2.0)
    report.add("tick compute p50", np.percentile(compute, 50), "ms")
    report.add("tick compute p99", np.percentile(compute, 99), "ms")
    traj = np.array(bridge_report["trajectory"])
    walked = traj[:, 1][-1] - traj[:, 1][len(traj) // 3]
    report.add("sim: forward speed (0.5 m/s commanded)",
               walked / (traj[-1, 0] - traj[len(traj) // 3, 0]), "m/s")
    report.add("safety faults", int(loop.monitor.status.fault is not None), "faults", 0,
               note=str(loop.monitor.status.fault))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="5 s runs instead of 60 s / 20 s")
    p.add_argument("--io-seconds", type=float, default=60.0)
    p.add_argument("--loop-seconds", type=float, default=20.0)
    args = p.parse_args()
    if args.quick:
        args.io_seconds = args.loop_seconds = 5.0
    print(f"device: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    domain = random.randint(1, 99)
    report = Report()
    with report.section("messages (per message)"):
        bench_messages(report)
    with report.section("controller compute (per 50 Hz tick)"):
        bench_controllers(report)
    with report.section(f"Go2 I/O over DDS, loopback, {args.io_seconds:.0f} s"):
        bench_io(report, domain, args.io_seconds)
    with report.section(f"control loop + sim bridge over DDS, {args.loop_seconds:.0f} s"):
        bench_loop(report, domain, args.loop_seconds)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
