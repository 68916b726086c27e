"""Analytic gait controller in MuJoCo physics: velocity tracking and falls over the command space.

    python bench/bench_control_tracking.py              # 5 s per case
    python bench/bench_control_tracking.py --seconds 10

For each named gait (and a few random points of the gait cube) x forward speed x yaw rate:
the commanded velocities, what the fail-safe governor executes (speed and turning limits,
gait blended towards trot), the measured body-frame speed and yaw rate (mean over the last
80 %) and whether the robot fell (trunk below 0.15 m or tilted past 60 degrees, the task
environment's rule). Targets: no falls; measured within 15 % of the executed command.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from common import Report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "more_policy"))

from more_policy.actions import ActionSpace  # noqa: E402
from more_policy.control.gait import GaitController  # noqa: E402
from more_policy.sim.tasks import GAITS  # noqa: E402
from more_policy.sim.tracking import track_command  # noqa: E402

SPACE = ActionSpace()
SPEEDS = (0.0, 0.6, 1.0, 1.5)
YAW_RATES = (0.0, 1.0)


def command(vx: float, yaw: float, gait) -> np.ndarray:
    c = SPACE.default_command(vel_x=vx, yaw_rate=yaw)
    c[SPACE.index("gait_phase"):SPACE.index("gait_bound") + 1] = gait
    c[SPACE.index("step_frequency")] = 3.5 if vx > 1.2 else 3.0  # as the scripted expert
    return c


def run_case(cmd: np.ndarray, seconds: float) -> dict:
    ctrl = GaitController()
    result = track_command(ctrl, cmd, seconds)
    gov = ctrl.governed
    return {"speed": result.speed, "yaw_rate": result.yaw_rate, "fell": result.fell,
            "executed_speed": float(gov.velocity[0]), "executed_yaw": float(gov.yaw_rate),
            "trot_blend": float(gov.trot_blend)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0, help="simulated seconds per case")
    p.add_argument("--random-gaits", type=int, default=8, help="extra random gait cases")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    cases = [(name, np.array(g), v, w) for name, g in GAITS.items() for v in SPEEDS
             for w in YAW_RATES]
    for _ in range(args.random_gaits):
        g = rng.uniform(0, 1, 3)
        cases.append(("(" + ",".join(f"{x:.2f}" for x in g) + ")", g,
                      float(rng.uniform(0, 1.5)), float(rng.uniform(-1, 1))))
    print(f"{'gait':<17} {'cmd v':>6} {'cmd w':>6} | {'exec v':>6} {'exec w':>6} {'trot':>5} | "
          f"{'meas v':>6} {'meas w':>6} | fell")
    start, falls, v_err, w_err = time.perf_counter(), 0, [], []
    for name, gait, v, w in cases:
        r = run_case(command(v, w, gait), args.seconds)
        falls += r["fell"]
        if not r["fell"]:
            v_err.append(abs(r["speed"] - r["executed_speed"]) / max(r["executed_speed"], 0.3))
            w_err.append(abs(r["yaw_rate"] - r["executed_yaw"]) / max(abs(r["executed_yaw"]), 0.3))
        print(f"{name:<17} {v:6.2f} {w:6.2f} | {r['executed_speed']:6.2f} "
              f"{r['executed_yaw']:6.2f} {r['trot_blend']:5.2f} | {r['speed']:6.2f} "
              f"{r['yaw_rate']:6.2f} | {'FELL' if r['fell'] else 'no'}", flush=True)
    report = Report()
    report.add("falls", falls, f"of {len(cases)}", target=0)
    with report.section("tracking errors"):
        report.add("speed error vs executed, mean", 100 * np.mean(v_err), "%")
        report.add("speed error vs executed, max", 100 * np.max(v_err), "%", target=15)
        report.add("yaw-rate error vs executed, mean", 100 * np.mean(w_err), "%")
        report.add("yaw-rate error vs executed, max", 100 * np.max(w_err), "%", target=15)
    report.add(f"{len(cases)} cases x {args.seconds:.0f} s took", time.perf_counter() - start,
               "s")
    return report.finish()


if __name__ == "__main__":
    raise SystemExit(main())
