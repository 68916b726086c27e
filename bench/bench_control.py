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


def row(name: str, value: str, target: str = "") -> None:
    print(f"  {name:<44} {value:>22}   {target}")


def per_call_us(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def bench_messages() -> None:
    print("messages (per message)")
    from unitree_sdk2py.utils.crc import CRC

    cmd = fill_lowcmd(new_lowcmd(), MotorCommand.damping())
    state = fill_lowstate(new_lowstate(), RobotState())
    reference = object.__new__(CRC)
    with contextlib.suppress(OSError):
        reference.__init__()  # the wheel lacks its native CRC library
    reference.platform = "pure-python"
    row("CRC LowCmd_ (fast)", f"{per_call_us(lambda: go2_crc(cmd), 2000):.1f} us",
        "target: << 2000 us (500 Hz budget)")
    row("CRC LowState_ (fast)", f"{per_call_us(lambda: go2_crc(state), 2000):.1f} us")
    row("CRC LowCmd_ (SDK pure-Python fallback)",
        f"{per_call_us(lambda: reference.Crc(cmd), 20):.0f} us")
    for name, msg in (("LowCmd_", cmd), ("LowState_", state)):
        cls, data = type(msg), msg.serialize()
        row(f"serialize {name} fast / generic",
            f"{per_call_us(msg.serialize, 2000):.0f} / "
            f"{per_call_us(lambda m=msg, c=cls: c.serialize.generic(m), 100):.0f} us")
        row(f"deserialize {name} fast / generic",
            f"{per_call_us(lambda c=cls, d=data: c.deserialize(d), 2000):.0f} / "
            f"{per_call_us(lambda c=cls, d=data: c.deserialize.generic(c, d), 100):.0f} us")


def bench_controllers() -> None:
    print("controller compute (per 50 Hz tick)")
    import torch
    from torch import nn

    from more_policy.control.wtw import WalkTheseWaysRunner

    space = ActionSpace()
    command = space.default_command()
    command[space.index("vel_x")] = 0.5
    gait = GaitController()
    gait_us = per_call_us(lambda: gait.step(RobotState(), command), 500)
    row("analytic gait controller", f"{gait_us:.0f} us",
        "target: << 20000 us")

    def mlp(sizes):
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ELU()]
        return torch.jit.script(nn.Sequential(*layers[:-1]))

    runner = WalkTheseWaysRunner(mlp([2100, 256, 128, 2]), mlp([2102, 512, 256, 128, 12]))
    row("walk-these-ways runner (TorchScript)",
        f"{per_call_us(lambda: runner.step(RobotState(), command), 300):.0f} us")


def python_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "more_policy"),
                                                      env.get("PYTHONPATH")]))
    return env


def bench_io(domain: int, seconds: float) -> None:
    print(f"Go2 I/O over DDS, loopback, {seconds:.0f} s at 500 Hz each way")
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
        report = json.loads(out.read_text())
    sent_cmd = client.stats.sent
    row("LowState received / sent", f"{client.stats.received} / {report['sent']}",
        "target: 0 lost")
    row("LowState lost", f"{report['sent'] - client.stats.received}", "target: 0")
    row("LowState rate", f"{client.stats.received / elapsed:.1f} Hz", "target: 500 Hz")
    row("LowCmd rate at the robot", f"{report['received'] / report['elapsed_s']:.1f} Hz",
        "target: 500 Hz")
    row("LowCmd sent by the client (whole run)", f"{sent_cmd}")
    row("LowCmd stream period p50 / p99 (sender)", f"{np.percentile(periods, 50):.2f} / "
        f"{np.percentile(periods, 99):.2f} ms", "target: 2.00 / <= 3.00 ms")
    row("bad CRC (either side)", f"{client.stats.bad_crc + report['bad_crc']}", "target: 0")
    if latencies:
        row("one-way latency p50 / p99",
            f"{np.percentile(latencies, 50):.2f} / {np.percentile(latencies, 99):.2f} ms")


def bench_loop(domain: int, seconds: float) -> None:
    print(f"50 Hz control loop + MuJoCo sim bridge over DDS, {seconds:.0f} s")
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
        while time.monotonic() < end:
            loop.set_command(walk)
            time.sleep(0.2)
        loop.stop()
        bridge.wait()
        client.close()
        report = json.loads(log.read_text())
    p50, p99 = loop.stats.period_jitter_ms()
    compute = np.asarray(loop.stats.compute_s)[10:] * 1e3  # a deque: no slicing
    row("ticks", f"{loop.stats.ticks}")
    row("period jitter p50 / p99", f"{p50:.3f} / {p99:.3f} ms", "target: p99 <= 2 ms")
    row("tick compute p50 / p99", f"{np.percentile(compute, 50):.2f} / "
        f"{np.percentile(compute, 99):.2f} ms")
    traj = np.array(report["trajectory"])
    walked = traj[:, 1][-1] - traj[:, 1][len(traj) // 3]
    row("sim: forward speed (0.5 commanded)",
        f"{walked / (traj[-1, 0] - traj[len(traj) // 3, 0]):.3f} m/s")
    row("safety fault", f"{loop.monitor.status.fault}", "target: None")


def main() -> None:
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
    bench_messages()
    bench_controllers()
    bench_io(domain, args.io_seconds)
    bench_loop(domain, args.loop_seconds)


if __name__ == "__main__":
    main()
