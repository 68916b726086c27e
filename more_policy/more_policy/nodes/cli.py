"""`more run sim|go2`, `more eval-bag`, `more replay-bag`: the ROS stack without `ros2`."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from more_policy.data.ros_messages import IMAGE_TOPIC, INSTRUCTION_TOPIC


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run", help="run the ROS 2 stack in one process (no `ros2 launch` needed)",
        description="Start the nodes of launch/<stack>.launch.py with the same parameter file "
                    "(more_bringup/config/<stack>.yaml) in one rclpy executor.")
    run.add_argument("stack", choices=("sim", "go2"), help="sim: MuJoCo Go2; go2: the robot")
    run.add_argument("--config", help="parameter YAML (default: more_bringup/config/<stack>.yaml)")
    run.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="NODE.PARAM=VALUE", help="override one parameter (repeatable)")
    run.add_argument("--checkpoint", help="policy_node.checkpoint (dir or random-tiny/small)")
    run.add_argument("--quantization", choices=("none", "int8", "nf4"),
                     help="policy_node.quantization")
    run.add_argument("--task", help="go2_sim_node.task (sim)")
    run.add_argument("--seed", type=int, help="go2_sim_node.seed (sim)")
    run.add_argument("--auto-instruction", action="store_true",
                     help="sim: publish the scene's own instruction at start")
    run.add_argument("--network-interface", help="controller_node.network_interface (go2)")
    run.add_argument("--record", metavar="BAG_DIR", help="record the stack's topics (mcap)")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.set_defaults(func=_run)

    evaluate = subparsers.add_parser(
        "eval-bag", help="offline: replay a rosbag2's frames + instructions through a policy",
        description="Compare a policy with the commands recorded in a rosbag2 (mcap or "
                    "sqlite3): per-dimension error, token accuracy, terminate precision/recall, "
                    "latency. Needs no ROS runtime.")
    evaluate.add_argument("bag", help="rosbag2 folder (metadata.yaml + .mcap/.db3)")
    evaluate.add_argument("--checkpoint", required=True,
                          help="checkpoint dir, or random-tiny/random-small")
    evaluate.add_argument("--quantization", choices=("none", "int8", "nf4"), default="none")
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of a random-* checkpoint")
    evaluate.add_argument("--out", default=None, help="directory for eval_bag.json + .png")
    evaluate.add_argument("--no-plot", action="store_true")
    evaluate.add_argument("--batch-size", type=int, default=8)
    evaluate.add_argument("--image-topic", default=IMAGE_TOPIC,
                          help="camera topic, sensor_msgs/Image or CompressedImage (JPEG/PNG); "
                               "if absent, <topic>/compressed is used (default, realsense-ros: "
                               "%(default)s)")
    evaluate.add_argument("--instruction-topic", default=INSTRUCTION_TOPIC,
                          help="std_msgs/String instruction topic (default: %(default)s)")
    evaluate.set_defaults(func=_eval_bag)

    replay = subparsers.add_parser(
        "replay-bag", help="re-publish a bag's camera + instructions over DDS at recorded timing",
        description="Publish the recorded inputs into a running stack and record its answers.")
    replay.add_argument("bag", help="rosbag2 folder")
    replay.add_argument("--record", metavar="BAG_DIR", help="record the stack's answers (mcap)")
    replay.add_argument("--speed", type=float, default=1.0, help="playback speed factor")
    replay.set_defaults(func=_replay_bag)


def _run(args: argparse.Namespace) -> int:
    from more_policy.nodes.runner import run_stack

    overrides = list(args.overrides)
    shortcuts = {"checkpoint": "policy_node.checkpoint",
                 "quantization": "policy_node.quantization",
                 "task": "go2_sim_node.task", "seed": "go2_sim_node.seed",
                 "network_interface": "controller_node.network_interface"}
    for attr, key in shortcuts.items():
        if getattr(args, attr) is not None:
            overrides.append(f"{key}={getattr(args, attr)}")
    if args.auto_instruction:
        if args.stack != "sim":
            raise SystemExit("--auto-instruction needs the sim stack")
        overrides.append("go2_sim_node.publish_instruction=true")
    return run_stack(args.stack, args.config, overrides, args.record, args.duration)


def _eval_bag(args: argparse.Namespace) -> int:
    from more_policy.data.rosbag import TruncatedBagWarning
    from more_policy.model.loading import load_policy
    from more_policy.nodes.bag_eval import evaluate_samples, load_samples

    error = None
    with warnings.catch_warnings(record=True) as caught:  # shown as one line each, below
        warnings.simplefilter("always", TruncatedBagWarning)
        try:  # the bag first: a bad one fails in seconds, before the model loads
            samples = load_samples(args.bag, args.image_topic, args.instruction_topic)
        except (ValueError, OSError) as e:
            error = " ".join(str(e).split())
    for warning in caught:
        print(f"more eval-bag: warning: {warning.message}", file=sys.stderr)
    if error is not None:
        print(f"more eval-bag: error: {error}", file=sys.stderr)
        return 2
    policy = load_policy(args.checkpoint, args.quantization, args.device, args.seed)
    report = evaluate_samples(samples, policy, args.bag, args.out, plot=not args.no_plot,
                              batch_size=args.batch_size)
    summary = {k: report[k] for k in ("samples", "token_accuracy", "action_accuracy",
                                      "frames_matched_exactly", "terminate")}
    summary["mae"] = {k: round(v["mae"], 4) for k, v in report["per_dimension"].items()}
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


def _replay_bag(args: argparse.Namespace) -> int:
    from more_policy.nodes.bags import replay_bag

    counts = replay_bag(args.bag, record=args.record, speed=args.speed)
    print(json.dumps({"published": counts, "recorded_to": args.record}))
    return 0
