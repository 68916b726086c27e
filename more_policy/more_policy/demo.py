"""`more demo`: the MoRE-Go2 stack end to end on a CPU, in a few minutes.

1. The six QUARD tasks in the MuJoCo sim with the scripted expert (the data generator's
   teacher): success table, bar plot, one rollout video per task.
2. A MoRE policy (the committed small checkpoint when present, else a random tiny model) in
   the same closed loop: success table and plot.
3. The ROS 2 stack through the container runner (`more run sim`): go2_sim_node (MuJoCo Go2 on
   rt/lowstate + rt/lowcmd, camera topic) + controller_node (analytic gait at 50 Hz) +
   policy_node, on a few tasks; each run recorded to a rosbag2 (mcap), its episode outcome read
   back from the bag, the camera stream written as a video and the policy's commands compared
   offline with `eval-bag`.
Everything lands in --out; the last lines print where.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHECKPOINT = REPO_ROOT / "artifacts" / "more-small"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="sim tasks + MoRE policy + the ROS 2 stack, end to end",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/demo", help="output directory")
    p.add_argument("--checkpoint", default=None,
                   help=f"policy checkpoint (default: {DEFAULT_CHECKPOINT.relative_to(REPO_ROOT)} "
                        "if present, else random-tiny)")
    p.add_argument("--episodes", type=int, default=2, help="sim episodes per task and policy")
    p.add_argument("--ros-tasks", default="go_to,distinguish,crawl",
                   help="comma-separated tasks for the ROS 2 runs ('' skips them)")
    p.add_argument("--ros-seconds", type=float, default=30.0, help="length of each ROS 2 run")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def default_checkpoint() -> str:
    return str(DEFAULT_CHECKPOINT) if (DEFAULT_CHECKPOINT / "more_config.json").is_file() \
        else "random-tiny"


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def sim_closed_loop(policy_spec: str, out: Path, episodes: int, seed: int, videos: int):
    from more_policy.sim.evaluate import evaluate, load_policy

    policy = load_policy(policy_spec)
    result = evaluate(policy, "all", episodes, seed, video_dir=out if videos else None,
                      videos_per_task=videos)
    result.save(out)
    print(result.table())
    return result


def ros_run(task: str, checkpoint: str, out: Path, seconds: float, seed: int) -> dict:
    """One `more run sim` episode, recorded; returns its outcome from the bag, with the
    offline replay of the bag through the same policy (token accuracy 1.0 = the stack
    answered exactly what the model computes)."""
    from more_policy.model.checkpoint import load_model
    from more_policy.nodes.bag_eval import eval_bag, read_bag
    from more_policy.nodes.messages import DIAGNOSTICS_TOPIC, EPISODE_TOPIC, IMAGE_TOPIC
    from more_policy.nodes.runner import run_stack

    bag = out / f"{task}.bag"
    overrides = [f"go2_sim_node.task={task}", f"go2_sim_node.seed={seed}",
                 "go2_sim_node.publish_instruction=true", f"policy_node.checkpoint={checkpoint}",
                 "go2_sim_node.image_width=160", "go2_sim_node.image_height=120"]
    run_stack("sim", overrides=overrides, record=str(bag), duration_s=seconds)
    messages = read_bag(bag, (EPISODE_TOPIC, IMAGE_TOPIC, DIAGNOSTICS_TOPIC))
    reports = [json.loads(m.msg.data) for m in messages if m.topic == EPISODE_TOPIC]
    frames = [m.msg for m in messages if m.topic == IMAGE_TOPIC]
    if not reports:
        raise RuntimeError(f"{bag}: the sim published no episode report")
    outcome = reports[-1]
    outcome["controller_fault"] = controller_fault(m.msg for m in messages
                                                   if m.topic == DIAGNOSTICS_TOPIC)
    write_camera_video(frames, out / f"{task}.mp4")
    try:
        report = eval_bag(bag, load_model(checkpoint), out / f"{task}_eval_bag")
        outcome["bag_token_accuracy"] = report["token_accuracy"]
    except ValueError as e:  # e.g. the policy never acted (no frame reached it in time)
        outcome["bag_token_accuracy"] = None
        print(f"eval-bag skipped: {e}")
    return outcome


def controller_fault(diagnostics) -> str | None:
    """The first fault controller_node reported on /diagnostics ('<fault>: <detail>')."""
    for array in diagnostics:
        for status in array.status:
            values = {kv.key: kv.value for kv in status.values}
            if values.get("fault"):
                return f"{values['fault']}: {values.get('fault_detail', '')}"
    return None


def write_camera_video(images, path: Path, fps: float = 5.0) -> None:
    import imageio.v2 as imageio
    import numpy as np

    if not images:
        return
    with imageio.get_writer(path, fps=fps, macro_block_size=8) as writer:
        for img in images:
            writer.append_data(np.frombuffer(img.data, np.uint8).reshape(img.height, img.width, 3))


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    checkpoint = args.checkpoint or default_checkpoint()
    started = time.monotonic()

    banner("1/3 scripted expert, six tasks, MuJoCo command mode")
    sim_closed_loop("expert", out / "expert", args.episodes, args.seed, videos=1)

    banner(f"2/3 MoRE policy {checkpoint!r} in the same closed loop")
    sim_closed_loop(checkpoint, out / "policy", args.episodes, args.seed, videos=0)

    ros_tasks = [t for t in args.ros_tasks.split(",") if t]
    outcomes = {}
    for i, task in enumerate(ros_tasks):
        banner(f"3/3 ROS 2 stack ({i + 1}/{len(ros_tasks)}): {task}, {args.ros_seconds:g} s: "
               "go2_sim_node + controller_node + policy_node over DDS")
        outcomes[task] = ros_run(task, checkpoint, out / "ros", args.ros_seconds, args.seed)
        o = outcomes[task]
        cause = (f" (controller: {o['controller_fault'] or 'no safety fault'})"
                 if o["failure"] else "")
        print(f"{task}: {o['instruction']!r} -> success={o['success']} "
              f"failure={o['failure']}{cause} goal distance {o['goal_distance']:.2f} m; "
              f"offline replay token accuracy {o['bag_token_accuracy']}")
    if outcomes:
        (out / "ros" / "outcomes.json").write_text(json.dumps(outcomes, indent=2))

    banner(f"done in {time.monotonic() - started:.0f} s; results in {out}/")
    for path in sorted(out.rglob("*")):
        if path.suffix in (".png", ".mp4", ".json"):
            print(f"  {path}")
    return 0
