"""`more sim generate|show`, `more eval` and `more sim-bridge` (the MuJoCo Go2 on DDS).

``python -m more_policy.sim.cli sim-bridge ...`` runs them without loading every area's CLI
(what the DDS tests and benches start as a subprocess).
"""

from __future__ import annotations

import argparse
import sys


def _size(text: str) -> tuple[int, int]:
    """'240' or '240x320' (height x width)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must be N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 16 or max(parts) > 960:
        raise argparse.ArgumentTypeError(f"image size must be 16..960 (N or HxW), got {text!r}")
    return parts[0], parts[1]


def _scene_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=_size, default=(240, 240), metavar="N|HxW")
    p.add_argument("--colors", choices=("seen", "unseen"), default="seen",
                   help="object colour set (unseen: generalisation test)")
    p.add_argument("--phrasing", choices=("train", "heldout"), default="train",
                   help="instruction templates (heldout: generalisation test)")
    p.add_argument("--max-steps", type=int, default=100, help="episode limit at 5 Hz")


def register(subparsers: argparse._SubParsersAction) -> None:
    sim = subparsers.add_parser("sim", help="MuJoCo Go2 tasks: generate data, preview scenes")
    sub = sim.add_subparsers(dest="sim_command", required=True, metavar="SIM_COMMAND")
    p = sub.add_parser("generate", help="write expert or sub-optimal episodes as a dataset")
    p.add_argument("--task", default="all", help="'all' or comma-separated task names")
    p.add_argument("--episodes", type=int, required=True, help="episodes per task")
    p.add_argument("--quality", choices=("expert", "suboptimal"), default="expert")
    p.add_argument("--out", required=True, help="dataset directory")
    p.add_argument("--append", action="store_true", help="add to an existing dataset")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    _scene_args(p)
    p.set_defaults(func=run_generate)

    p = sub.add_parser("show", help="render a task's first camera frame to a PNG")
    p.add_argument("--task", required=True)
    p.add_argument("--out", required=True, help="PNG path")
    _scene_args(p)
    p.set_defaults(func=run_show)

    p = subparsers.add_parser("eval", help="closed-loop success rates on the six sim tasks")
    p.add_argument("--policy", required=True, help="'expert', 'random' or a checkpoint dir")
    p.add_argument("--tasks", default="all", help="'all' or comma-separated task names")
    p.add_argument("--episodes", type=int, default=25, help="episodes per task")
    p.add_argument("--mode", choices=("command", "physics"), default="command",
                   help="physics: joints driven by the analytic gait controller")
    p.add_argument("--batch-size", type=int, default=8, help="environments run in lockstep")
    p.add_argument("--out", default="outputs/eval", help="results.json and success.png go here")
    p.add_argument("--videos", type=int, default=0, metavar="N",
                   help="write the first N rollouts of each task as mp4")
    p.add_argument("--quantization", choices=("int8", "nf4"), default=None,
                   help="load a checkpoint's backbone quantized")
    _scene_args(p)
    p.set_defaults(func=run_eval)

    b = subparsers.add_parser("sim-bridge", help="MuJoCo Go2 on rt/lowstate + rt/lowcmd")
    b.add_argument("--domain", type=int, default=0, help="DDS domain id")
    b.add_argument("--interface", default="lo", help="network interface (lo: loopback)")
    b.add_argument("--seconds", type=float, default=60.0, help="simulated time to run")
    b.add_argument("--physics-dt", type=float, default=0.002)
    b.add_argument("--start-lying", action="store_true")
    b.add_argument("--wait-controller", type=float, default=10.0,
                   help="seconds to wait for the first LowCmd before the clock starts")
    b.add_argument("--log", help="write the base trajectory and link counters here (JSON)")
    b.set_defaults(func=run_sim_bridge)


def run_generate(args: argparse.Namespace) -> int:
    from more_policy.sim.generate import generate
    from more_policy.sim.scenes import SceneError

    try:
        summary = generate(args.task, args.episodes, args.quality, args.out, seed=args.seed,
                           image_size=args.image_size, colors=args.colors,
                           phrasing=args.phrasing, max_steps=args.max_steps,
                           append=args.append, overwrite=args.overwrite)
    except (SceneError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for task, s in summary.items():
        print(f"{task:<12} {s['successes']:>4}/{s['episodes']:<4} successful")
    print(f"wrote {args.out}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    import imageio.v2 as imageio

    from more_policy.sim.env import make_env
    from more_policy.sim.scenes import SceneError

    try:
        env = make_env(args.task, seed=args.seed, image_size=args.image_size,
                       colors=args.colors, phrasing=args.phrasing)
    except (SceneError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    obs = env.reset(seed=args.seed)
    imageio.imwrite(args.out, obs.image)
    print(f"{obs.instruction!r} -> {args.out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from more_policy.sim.evaluate import evaluate, make_eval_policy
    from more_policy.sim.scenes import SceneError

    controller_factory = None
    if args.mode == "physics":
        from more_policy.control.gait import GaitController

        controller_factory = GaitController
    try:
        policy = make_eval_policy(args.policy, args.quantization)
        result = evaluate(policy, args.tasks, args.episodes, args.seed, mode=args.mode,
                          controller_factory=controller_factory, batch_size=args.batch_size,
                          image_size=args.image_size, colors=args.colors,
                          phrasing=args.phrasing, max_steps=args.max_steps,
                          video_dir=args.out if args.videos else None,
                          videos_per_task=args.videos)
    except (SceneError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result.table())
    errors = [e for e in result.episodes if e.error]
    if errors:
        print(f"{len(errors)} episode(s) raised and count as failures; first: {errors[0].error}")
    paths = result.save(args.out)
    print(f"wrote {paths['json']} and {paths['plot']}")
    return 0


def run_sim_bridge(args: argparse.Namespace) -> int:
    import json

    from more_policy.robot.go2_io import Go2IOConfig
    from more_policy.sim.bridge import Go2SimBridge, SimBridgeConfig

    bridge = Go2SimBridge(Go2IOConfig(domain_id=args.domain, interface=args.interface),
                          SimBridgeConfig(physics_dt=args.physics_dt,
                                          start_lying=args.start_lying))
    try:
        bridge.wait_for_controller(args.wait_controller)
        bridge.run(args.seconds)
        if args.log:
            with open(args.log, "w") as f:
                json.dump(bridge.report(), f)
    finally:
        bridge.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="more")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
