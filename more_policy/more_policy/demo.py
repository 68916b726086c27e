"""`more demo`: the MoRE-Go2 stack end to end on a CPU, within 10 CPU-minutes.

1. The six QUARD tasks in the MuJoCo sim with the scripted expert (the data generator's
   teacher), one episode per task by default.
2. A MoRE policy (the committed small checkpoint when present, else a random tiny model) in
   the same closed loop.
3. The ROS 2 stack through the container runner (`more run sim`): go2_sim_node (MuJoCo Go2 on
   rt/lowstate + rt/lowcmd, camera topic) + controller_node (analytic gait at 50 Hz) +
   policy_node, recorded to a rosbag2 (mcap); the outcome is read back from the bag and the
   policy's commands are compared offline with `eval-bag`.

Every episode gets a video: the robot's camera beside a top-down view, with the instruction,
step, command and outcome written on it. success.png plots success and progress together.
The run ends with a table: per stage and task, the outcome, its reason and where the files
are. A rerun replaces the previous run's results in --out.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHECKPOINT = REPO_ROOT / "artifacts" / "more-small"
CPU_BUDGET_MIN = 10.0  # on our 2-core CI machine, with the defaults below
STAGES = ("expert", "policy", "ros")  # the demo's folders in --out (a rerun replaces them)


@dataclass
class Row:
    """One line of the final table."""

    stage: str
    task: str
    success: bool
    reason: str
    files: str


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="sim tasks + MoRE policy + the ROS 2 stack, end to end",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/demo", help="output directory")
    p.add_argument("--checkpoint", default=None,
                   help=f"policy checkpoint (default: {DEFAULT_CHECKPOINT.relative_to(REPO_ROOT)} "
                        "if present, else random-tiny)")
    p.add_argument("--episodes", type=int, default=1,
                   help="sim episodes per task and policy (1 keeps the demo within "
                        f"{CPU_BUDGET_MIN:g} CPU-minutes; the paper uses 25)")
    p.add_argument("--ros-tasks", default="go_to",
                   help="comma-separated tasks for the ROS 2 runs ('' skips them)")
    p.add_argument("--ros-seconds", type=float, default=20.0, help="length of each ROS 2 run")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def default_checkpoint() -> str:
    return str(DEFAULT_CHECKPOINT) if (DEFAULT_CHECKPOINT / "more_config.json").is_file() \
        else "random-tiny"


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def cpu_minutes() -> float:
    """CPU time of this process and its finished children (the sim node), in minutes."""
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in used) / 60.0


def clear_previous_run(out: Path) -> None:
    """Remove the demo's own results from an earlier run (never anything else in --out)."""
    for name in STAGES:
        if (out / name).exists():
            shutil.rmtree(out / name)
    (out / "success.png").unlink(missing_ok=True)


def sim_stage(stage: str, policy_spec: str, out: Path, episodes: int, seed: int):
    from more_policy.sim.evaluate import evaluate, make_eval_policy

    result = evaluate(make_eval_policy(policy_spec), "all", episodes, seed, video_dir=out,
                      videos_per_task=1)
    result.save(out)
    print(result.table())
    rows = [Row(stage, e.task, e.success, e.outcome,
                str(out / f"{e.task}_{e.index:03d}.mp4") if e.index == 0 else str(out))
            for e in result.episodes]
    return result, rows


def ros_run(task: str, checkpoint: str, out: Path, seconds: float, seed: int) -> dict:
    """One `more run sim` episode, recorded; returns its outcome from the bag, with the
    offline replay of the bag through the same policy (token accuracy 1.0 = the stack
    answered exactly what the model computes)."""
    from more_policy.data.ros_messages import (
        COMMAND_TOPIC,
        DIAGNOSTICS_TOPIC,
        EPISODE_TOPIC,
        IMAGE_TOPIC,
    )
    from more_policy.data.rosbag import read_bag
    from more_policy.model.loading import load_policy
    from more_policy.nodes.bag_eval import eval_bag
    from more_policy.nodes.runner import run_stack

    bag = out / f"{task}.bag"
    overrides = [f"go2_sim_node.task={task}", f"go2_sim_node.seed={seed}",
                 "go2_sim_node.publish_instruction=true", f"policy_node.checkpoint={checkpoint}",
                 "go2_sim_node.image_width=160", "go2_sim_node.image_height=120"]
    # `seconds` of episode: counted from the sim's first report, not from process start.
    run_stack("sim", overrides=overrides, record=str(bag), duration_s=seconds,
              start_on_topic=EPISODE_TOPIC)
    messages = read_bag(bag, (EPISODE_TOPIC, IMAGE_TOPIC, COMMAND_TOPIC, DIAGNOSTICS_TOPIC))
    reports = [json.loads(m.msg.data) for m in messages if m.topic == EPISODE_TOPIC]
    if not reports:
        raise RuntimeError(f"{bag}: the sim published no episode report")
    outcome = reports[-1]
    outcome["commands"] = sum(m.topic == COMMAND_TOPIC for m in messages)
    outcome["video"] = str(write_bag_video(messages, task, seed, out / f"{task}.mp4"))
    outcome["controller_fault"] = controller_fault(m.msg for m in messages
                                                   if m.topic == DIAGNOSTICS_TOPIC)
    try:
        report = eval_bag(bag, load_policy(checkpoint), out / f"{task}_eval_bag")
        outcome["bag_token_accuracy"] = report["token_accuracy"]
    except ValueError as e:  # e.g. the policy never acted (no frame reached it in time)
        outcome["bag_token_accuracy"] = None
        print(f"eval-bag skipped: {e}")
    return outcome


def ros_reason(outcome: dict, seconds: float) -> str:
    from more_policy.sim.video import outcome_text

    if outcome["failure"]:
        cause = outcome["controller_fault"] or "no safety fault"
        return f"{outcome_text(False, outcome['failure'])} (controller: {cause})"
    if outcome["success"]:
        return outcome_text(True, None)
    if not outcome["commands"]:
        return f"no command from the policy in {seconds:g} s"
    return f"still going after {seconds:g} s ({outcome['goal_distance']:.2f} m from the goal)"


def controller_fault(diagnostics) -> str | None:
    """The first fault controller_node reported on /diagnostics ('<fault>: <detail>')."""
    for array in diagnostics:
        for status in array.status:
            values = {kv.key: kv.value for kv in status.values}
            if values.get("fault"):
                return f"{values['fault']}: {values.get('fault_detail', '')}"
    return None


def write_bag_video(messages, task: str, seed: int, path: Path) -> Path | None:
    """The recorded camera stream as a rollout video: each frame with the last command and
    episode report before it; the top-down view is the sim's scene (rebuilt from task and
    seed) with the robot at the reported pose."""
    import mujoco
    import numpy as np

    from more_policy.actions import ActionSpace
    from more_policy.data.ros_messages import (
        COMMAND_TOPIC,
        EPISODE_TOPIC,
        IMAGE_TOPIC,
        image_to_rgb,
    )
    from more_policy.sim.env import make_env
    from more_policy.sim.physics import yaw_pitch_quat
    from more_policy.sim.tasks import goal_xy
    from more_policy.sim.video import (
        Caption,
        TopDownView,
        outcome_text,
        rollout_frame,
        write_video,
    )

    space = ActionSpace()
    env = make_env(task, seed=seed, render=False)
    env.reset(seed=seed)
    physics = env.physics
    view = TopDownView.framing(physics.model, env.base_pose()[:2], goal_xy(env.scene))
    frames, command, report, step = [], None, None, 0
    try:
        for m in messages:
            if m.topic == COMMAND_TOPIC:
                command, step = space.from_go2_command(m.msg), step + 1
            elif m.topic == EPISODE_TOPIC:
                report = json.loads(m.msg.data)
            elif m.topic == IMAGE_TOPIC and report is not None:  # once a pose is known
                x, y, z, yaw, pitch = report["base_pose"]
                physics.set_base_pose(np.array([x, y, z]), yaw_pitch_quat(yaw, pitch))
                mujoco.mj_kinematics(physics.model, physics.data)
                outcome = outcome_text(report["success"], report["failure"]) \
                    if report["success"] or report["failure"] else "running"
                frames.append(rollout_frame(
                    image_to_rgb(m.msg), view.render(physics.data),
                    Caption(report["instruction"], step, command, outcome), space))
    finally:
        view.close()
        env.close()
    return write_video(path, frames) if frames else None


def print_table(rows: list[Row]) -> None:
    cells = [("stage", "task", "success", "reason")] + [
        (r.stage, r.task, "yes" if r.success else "no", r.reason) for r in rows]
    widths = [max(len(c) for c in column) for column in zip(*cells)]
    for line, files in zip(cells, ["files"] + [r.files for r in rows]):
        print("  ".join(f"{c:<{w}}" for c, w in zip(line, widths)) + f"  {files}")


def run(args: argparse.Namespace) -> int:
    from more_policy.sim.evaluate import plot_success_progress

    out = Path(args.out)
    checkpoint = args.checkpoint or default_checkpoint()
    started = time.monotonic()
    clear_previous_run(out)
    ros_tasks = [t for t in args.ros_tasks.split(",") if t]
    print(f"more demo: {args.episodes} episode(s) per task per policy, {len(ros_tasks)} ROS 2 "
          f"run(s) of {args.ros_seconds:g} s (sized for <= {CPU_BUDGET_MIN:g} CPU-minutes on a "
          "2-core machine; --episodes / --ros-tasks / --ros-seconds for more)", flush=True)

    banner("1/3 scripted expert, six tasks, MuJoCo command mode")
    expert, rows = sim_stage("expert", "expert", out / "expert", args.episodes, args.seed)

    banner(f"2/3 MoRE policy {checkpoint!r} in the same closed loop")
    policy, policy_rows = sim_stage("policy", checkpoint, out / "policy", args.episodes,
                                    args.seed)
    rows += policy_rows
    plot_success_progress([expert, policy], out / "success.png")

    outcomes = {}
    for i, task in enumerate(ros_tasks):
        banner(f"3/3 ROS 2 stack ({i + 1}/{len(ros_tasks)}): {task}, {args.ros_seconds:g} s: "
               "go2_sim_node + controller_node + policy_node over DDS")
        o = outcomes[task] = ros_run(task, checkpoint, out / "ros", args.ros_seconds, args.seed)
        reason = ros_reason(o, args.ros_seconds)
        print(f"{task}: {o['instruction']!r} -> {reason}; goal distance "
              f"{o['goal_distance']:.2f} m; offline replay token accuracy "
              f"{o['bag_token_accuracy']}")
        rows.append(Row("ros", task, bool(o["success"]), reason,
                        f"{o['video'] or 'no video'}, {out / 'ros' / (task + '.bag')}"))
    if outcomes:
        (out / "ros" / "outcomes.json").write_text(json.dumps(outcomes, indent=2))

    banner(f"summary: {time.monotonic() - started:.0f} s wall, {cpu_minutes():.1f} CPU-minutes "
           f"(budget {CPU_BUDGET_MIN:g}); plots: {out / 'success.png'}")
    print_table(rows)
    return 0
