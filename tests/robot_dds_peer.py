"""A stand-in Go2 for DDS tests and bench/bench_control.py: the robot side of rt/lowstate/lowcmd.

Publishes LowState at ``--hz`` for ``--seconds`` (tick = send time in us, mod 2**32, so the
other side can measure latency; q[0] = sequence number), every ``--corrupt-every``-th message
with a wrong CRC, and writes what it received on rt/lowcmd as JSON to ``--out``.

``--stand``: the default standing state instead of sequence numbers in q (a healthy robot for
the safety rules). ``--bad FIELD=VALUE --bad-after S``: from S seconds on, every LowState
carries VALUE in one element of FIELD (a valid CRC: a sensor fault, not a transport error).
The JSON holds the time the first bad one and the last one were sent, the receive times of the
commands (time.monotonic, the same clock in every process) and whether each was pure damping.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from more_policy.robot.go2 import RobotState
from more_policy.robot.go2_io import Go2IOConfig, Go2RobotEndpoint, fill_lowstate


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--domain", type=int, required=True)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--hz", type=float, default=500.0)
    p.add_argument("--corrupt-every", type=int, default=0)
    p.add_argument("--wait-peer", type=float, default=10.0)
    p.add_argument("--out", required=True)
    p.add_argument("--bad", help="FIELD=VALUE, e.g. q=nan, quat=0, foot_force=32767")
    p.add_argument("--bad-after", type=float, default=1.0)
    p.add_argument("--stand", action="store_true",
                   help="publish the stand pose (q is not a sequence number); implied by --bad")
    args = p.parse_args()

    seqs: list[float] = []
    commands: list[tuple[float, bool]] = []  # (receive time, pure damping)

    def on_command(cmd) -> None:
        seqs.append(float(cmd.q[0]))
        commands.append((time.monotonic(), bool(np.all(cmd.kp == 0) and np.all(cmd.kd > 0))))

    endpoint = Go2RobotEndpoint(Go2IOConfig(domain_id=args.domain, interface="lo"),
                                on_command=on_command)
    endpoint.wait_for_first(args.wait_peer)  # start the clock once the controller is there
    n = int(args.seconds * args.hz)
    state = RobotState()
    start = time.perf_counter()
    corrupted = 0
    bad_since = None
    for k in range(n):
        if not (args.stand or args.bad):
            state.q = np.full(12, float(k))
        if args.bad and bad_since is None and time.perf_counter() - start >= args.bad_after:
            field, value = args.bad.split("=")
            data = np.asarray(getattr(state, field), dtype=np.float64).copy()
            data[0 if field == "quat" else 1] = float(value)
            if field == "quat" and float(value) == 0.0:
                data[:] = 0.0  # the all-zero quaternion
            setattr(state, field, data)
            bad_since = time.monotonic()
        state.tick = int(time.monotonic() * 1e6) & 0xFFFFFFFF
        if args.corrupt_every and k % args.corrupt_every == args.corrupt_every - 1:
            msg = fill_lowstate(endpoint._msg, state)
            msg.crc ^= 0x1  # one flipped bit
            endpoint._publisher.Write(msg)
            corrupted += 1
        else:
            endpoint.publish(state)
        delay = start + (k + 1) / args.hz - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    last_sent = time.monotonic()
    time.sleep(0.3)  # let the last commands arrive
    endpoint.close()
    with open(args.out, "w") as f:
        json.dump({"sent": n, "corrupted": corrupted, "received": endpoint.stats.received,
                   "bad_crc": endpoint.stats.bad_crc, "command_seqs": seqs,
                   "bad_since": bad_since, "commands": commands, "last_sent": last_sent,
                   "elapsed_s": time.perf_counter() - start}, f)


if __name__ == "__main__":
    main()
