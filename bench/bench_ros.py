"""ROS stack figures next to their targets (run: `python bench/bench_ros.py [--checkpoint C]`).

1. sensor_msgs/Image <-> numpy conversion at the camera's 640x480.
2. camera frame -> policy_node (its own process, real DDS) -> Go2Command: end-to-end latency,
   and the node's own breakdown from /more/status.
3. eval-bag throughput on a bag recorded from that run.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from common import Report, timed

REPO = Path(__file__).resolve().parents[1]


def bench_conversion(report: Report) -> None:
    from more_policy.data.ros_messages import image_to_rgb
    from more_policy.nodes.messages import rgb_to_image

    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    msg = rgb_to_image(rgb)
    for name, fn in (("rgb_to_image 640x480", lambda: rgb_to_image(rgb)),
                     ("image_to_rgb 640x480", lambda: image_to_rgb(msg))):
        report.add(name + " (median)", np.median(timed(fn, 50, warmup=0)), "ms", 2)


def bench_policy_node(report: Report, checkpoint: str, frames: int, bag: Path) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from more_msgs.msg import Go2Command, PolicyStatus
    from more_policy.data.ros_messages import (
        COMMAND_TOPIC,
        IMAGE_TOPIC,
        INSTRUCTION_TOPIC,
        STATUS_TOPIC,
    )
    from more_policy.nodes.bags import BagRecorder
    from more_policy.nodes.interfaces import COMMAND_QOS, INSTRUCTION_QOS, SENSOR_QOS, STATUS_QOS
    from more_policy.nodes.messages import rgb_to_image

    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(100, 230)))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    node = subprocess.Popen([sys.executable, "-m", "more_policy.nodes.policy_node", "--ros-args",
                             "-p", f"checkpoint:={checkpoint}", "-p", "max_rate_hz:=0.0",
                             "-p", "image_max_age_s:=5.0"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    rclpy.init()
    probe = rclpy.create_node("bench_probe")
    arrived: list[tuple[float, Go2Command]] = []
    statuses: list[PolicyStatus] = []
    got = threading.Event()

    def on_command(msg):
        arrived.append((time.perf_counter(), msg))
        got.set()

    probe.create_subscription(Go2Command, COMMAND_TOPIC, on_command, COMMAND_QOS)
    probe.create_subscription(PolicyStatus, STATUS_TOPIC, statuses.append, STATUS_QOS)
    images = probe.create_publisher(Image, IMAGE_TOPIC, SENSOR_QOS)
    instructions = probe.create_publisher(String, INSTRUCTION_TOPIC, INSTRUCTION_QOS)
    recorder = BagRecorder(bag)
    executor = SingleThreadedExecutor()
    executor.add_node(probe)
    executor.add_node(recorder)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        for text in iter(node.stdout.readline, ""):  # wait until the model is loaded
            if "policy ready" in text:
                break
        time.sleep(1.0)
        instructions.publish(String(data="go to the red ball"))
        time.sleep(0.5)
        rgb = np.zeros((480, 640, 3), dtype=np.uint8)  # a frame the random model walks on
        latencies = []
        for _ in range(frames):
            got.clear()
            sent = time.perf_counter()
            images.publish(rgb_to_image(rgb, probe.get_clock().now().to_msg()))
            if got.wait(2.0):
                latencies.append(arrived[-1][0] - sent)
            time.sleep(0.05)
        lat = 1e3 * np.array(latencies)
        report.add("commands answered", len(latencies), f"of {frames}", frames,
                   higher_is_better=True)
        # 150 ms: tiny on a CPU; with Fuyu-8B on a GPU the aim is 2-10 Hz.
        report.add(f"frame -> Go2Command p50 ({checkpoint}, 640x480)", np.median(lat), "ms",
                   150 if checkpoint == "random-tiny" else None)
        report.add(f"frame -> Go2Command p90 ({checkpoint})", np.percentile(lat, 90), "ms")
        done = [s for s in statuses if s.total_ms > 0]
        for field in ("image_age_ms", "preprocess_ms", "prefill_ms", "decode_ms", "total_ms"):
            report.add(f"policy_node {field} p50",
                       np.median([getattr(s, field) for s in done]), "ms")
    finally:
        executor.shutdown()
        recorder.destroy_node()
        probe.destroy_node()
        rclpy.shutdown()
        os.killpg(node.pid, signal.SIGINT)
        node.wait(10)


def bench_eval_bag(report: Report, checkpoint: str, bag: Path) -> None:
    from more_policy.model.loading import load_policy
    from more_policy.nodes.bag_eval import eval_bag

    policy = load_policy(checkpoint)
    t0 = time.perf_counter()
    result = eval_bag(bag, policy, plot=False)
    elapsed = time.perf_counter() - t0
    report.add("eval-bag samples/s", result["samples"] / elapsed, "1/s",
               10 if checkpoint == "random-tiny" else None, higher_is_better=True)
    report.add("eval-bag token accuracy vs its own recording", result["token_accuracy"], "",
               1.0, higher_is_better=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="random-tiny")
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()
    print(f"device: {os.uname().machine} CPU, {os.cpu_count()} cores (no GPU)")
    report = Report()
    with report.section("image conversion"):
        bench_conversion(report)
    with tempfile.TemporaryDirectory() as tmp:
        bag = Path(tmp) / "bench_bag"
        with report.section("policy_node latency"):
            bench_policy_node(report, args.checkpoint, args.frames, bag)
        with report.section("eval-bag"):
            bench_eval_bag(report, args.checkpoint, bag)
    return report.finish()


if __name__ == "__main__":
    raise SystemExit(main())
