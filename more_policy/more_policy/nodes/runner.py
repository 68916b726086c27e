"""The container runner: the launch files' nodes without `ros2`, for pip-only machines.

``more run sim`` / ``more run go2`` build the same node classes the launch files start, give
each the same YAML parameter file (more_bringup/config/<stack>.yaml, one section per node
name, exactly what ``ros2 launch`` passes), and spin them together in one multi-threaded rclpy
executor. Lifecycle nodes (controller_node) are configured and activated as a lifecycle manager
would (their ``autostart`` parameter) and deactivated before they are destroyed.
``--record DIR`` also records the stack's topics to a rosbag2 (mcap) folder.

The simulated robot (go2_sim_node) runs as a child process: it stands in for the Go2, which is
its own computer, and the Unitree SDK keeps one DDS participant per process, in which a LowCmd
writer and a LowState writer deliver to each other synchronously (holding go2_io's endpoint
locks: the sim and the controller would deadlock in one process).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

# Node name -> "module:Class"; the node name is also its YAML section and launch `name=`.
NODE_CLASSES: dict[str, str] = {
    "policy_node": "more_policy.nodes.policy_node:PolicyNode",
    "controller_node": "more_policy.nodes.controller_node:ControllerNode",
    "go2_sim_node": "more_policy.nodes.go2_sim_node:Go2SimNode",
    "camera_node": "more_policy.nodes.camera_node:CameraNode",
}


@dataclass(frozen=True)
class Stack:
    """One deployable set of nodes: its launch file, its parameter file, its nodes."""

    launch_file: str
    config_file: str
    nodes: tuple[str, ...]
    child_processes: tuple[str, ...] = ()  # of ``nodes``, those run as child processes


STACKS: dict[str, Stack] = {
    "sim": Stack("sim.launch.py", "sim.yaml", ("go2_sim_node", "controller_node", "policy_node"),
                 child_processes=("go2_sim_node",)),
    "go2": Stack("go2.launch.py", "go2.yaml", ("camera_node", "controller_node", "policy_node")),
}


def bringup_dir() -> Path:
    """The more_bringup package directory (config/ and launch/): installed share or source tree."""
    candidates = []
    if os.environ.get("MORE_BRINGUP_DIR"):
        candidates.append(Path(os.environ["MORE_BRINGUP_DIR"]))
    try:
        from more_bringup import package_dir

        candidates.append(package_dir())
    except ImportError:
        pass
    candidates.append(Path(__file__).resolve().parents[3] / "more_bringup")  # source checkout
    for path in candidates:
        if (path / "config").is_dir():
            return path
    raise FileNotFoundError("more_bringup not found (looked in "
                            f"{', '.join(map(str, candidates))}); set MORE_BRINGUP_DIR")


def load_node_parameters(config_file: str | Path, node_name: str) -> dict[str, Any]:
    """The ``ros__parameters`` of ``node_name`` in a ROS 2 parameter YAML file."""
    data = yaml.safe_load(Path(config_file).read_text()) or {}
    section = next((data[key] for key in (f"/**/{node_name}", node_name, f"/{node_name}")
                    if key in data), {})
    return dict(section.get("ros__parameters") or {})


def node_class(node_name: str) -> type:
    if node_name not in NODE_CLASSES:
        raise KeyError(f"unknown node {node_name!r}; known: {sorted(NODE_CLASSES)}")
    module, cls = NODE_CLASSES[node_name].split(":")
    return getattr(importlib.import_module(module), cls)


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """['policy_node.checkpoint=/ckpt', ...] -> {'policy_node': {'checkpoint': '/ckpt'}}."""
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        node, dot, param = key.partition(".")
        if not sep or not dot or not param:
            raise ValueError(f"override {item!r}: expected NODE.PARAM=VALUE")
        overrides.setdefault(node, {})[param] = yaml.safe_load(value)
    return overrides


def build_nodes(stack: Stack, config_file: Path, overrides: dict[str, dict[str, Any]]) -> list:
    """Instantiate the stack's in-process nodes with the YAML file and per-node overrides."""
    from rclpy.parameter import Parameter

    unknown = set(overrides) - set(stack.nodes)
    if unknown:
        raise ValueError(f"overrides for nodes not in this stack: {sorted(unknown)}")
    nodes = []
    try:
        for name in stack.nodes:
            if name in stack.child_processes:
                continue
            params = [Parameter(k, value=v) for k, v in overrides.get(name, {}).items()]
            nodes.append(autostart(node_class(name)(
                cli_args=["--ros-args", "--params-file", str(config_file)],
                parameter_overrides=params)))
    except BaseException:  # leave nothing half-started (threads, DDS endpoints)
        for node in reversed(nodes):
            node.destroy_node()
        raise
    return nodes


def start_child_nodes(stack: Stack, config_file: Path,
                      overrides: dict[str, dict[str, Any]]) -> list[subprocess.Popen]:
    """``python -m <node module> --ros-args --params-file <yaml> -p k:=v`` per child node."""
    children = []
    for name in stack.child_processes:
        module = NODE_CLASSES[name].split(":")[0]
        args = [sys.executable, "-m", module, "--ros-args", "--params-file", str(config_file)]
        for key, value in overrides.get(name, {}).items():
            text = value if isinstance(value, str) else json.dumps(value)  # YAML-readable
            args += ["-p", f"{key}:={text}"]
        children.append(subprocess.Popen(args))
    return children


def stop_children(children: list[subprocess.Popen], timeout: float = 10.0) -> None:
    """Ctrl-C each child, then kill what has not exited after ``timeout``."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    for child in children:
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def spin_nodes(nodes: list, duration_s: float | None = None,
               ready: Callable[[], bool] | None = None, ready_timeout_s: float = 180.0) -> None:
    """Spin nodes in one MultiThreadedExecutor until Ctrl-C/SIGTERM (or ``duration_s``);
    always destroy them (each node leaves its hardware safe in destroy_node).

    With ``ready``, ``duration_s`` counts from when ``ready()`` first holds, so a slow start
    (a loaded machine) does not shorten the run; TimeoutError if it never does."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    executor = None
    try:  # a Ctrl-C may land before spin starts (right after the nodes are built): same exit
        if not rclpy.ok():  # it already shut the context down: no executor can be made
            return
        executor = MultiThreadedExecutor(num_threads=max(4, 2 * len(nodes)))
        for node in nodes:
            executor.add_node(node)
        if duration_s is None:
            executor.spin()
        else:
            start, end = time.monotonic(), None
            while rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
                now = time.monotonic()
                if end is None and (ready is None or ready()):
                    end = now + duration_s
                elif end is None and now - start > ready_timeout_s:
                    raise TimeoutError(f"the stack was not ready after {ready_timeout_s:g} s")
                elif end is not None and now >= end:
                    break
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():  # not a shutdown racing the executor's creation: a real failure
            raise
    finally:
        # rclpy 7.1's Executor.shutdown() neither waits for callbacks already handed to the
        # thread pool nor for the handler of its own wake-up guard, which it destroys at once:
        # let the pool finish first (else a callback dies on a destroyed handle and rclpy
        # prints "exception was never retrieved" at exit), then shut the executor down.
        if executor is not None:
            pool = getattr(executor, "_executor", None)
            if pool is not None:
                pool.shutdown(wait=True)
            executor.shutdown()
        for node in reversed(nodes):
            deactivate(node)
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def autostart(node: Any) -> Any:
    """Configure and activate a lifecycle node whose ``autostart`` parameter is true (what a
    lifecycle manager would do); other nodes are returned as they are. A failed transition
    (no robot, sport mode active) leaves the node where it stopped, motors untouched, logged
    with how to retry: the rest of the stack keeps running, like a camera that is retrying."""
    from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

    if isinstance(node, LifecycleNode) and node.get_parameter("autostart").value:
        for name, transition in (("configure", node.trigger_configure),
                                 ("activate", node.trigger_activate)):
            if transition() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().error(
                    f"autostart: {name} failed; retry with `ros2 lifecycle set "
                    f"{node.get_fully_qualified_name()} {name}`")
                break
    return node


def deactivate(node: Any) -> None:
    """Deactivate an active lifecycle node before it is destroyed (its motors damp)."""
    import rclpy

    # After Ctrl-C the context is gone and the transition event cannot be published;
    # destroy_node then leaves the hardware safe by itself.
    if getattr(node, "is_active", False) and rclpy.ok():
        node.trigger_deactivate()


def node_main(make_node: Callable[[], Any], args: list[str] | None = None) -> NoReturn:
    """main() of a node executable: rclpy.init, build the node, spin it, exit.

    Ctrl-C or SIGTERM at any moment, even while the node is still being built (a model
    loading: rclpy's handler then raises KeyboardInterrupt there, or the half-built node fails
    on the shut-down context), ends the process at once with exit code 0 and no traceback.
    A node that fails to build for any other reason raises as usual.
    """
    import rclpy

    rclpy.init(args=args)
    try:
        node = make_node()
    except (KeyboardInterrupt, Exception):
        if rclpy.ok():  # not a shutdown: a real failure
            raise
        exit_process(0)  # interrupted while building: nothing started that needs stopping
    spin_nodes([node])
    exit_process(0)


def exit_process(code: int = 0) -> NoReturn:
    """End a node process right after its clean shutdown (nodes destroyed, rclpy shut down).

    Normal interpreter finalization with torch loaded takes seconds on a busy machine (it
    tears down thousands of modules), past the 2 s a Ctrl-C or SIGTERM may take; nothing is
    left to clean up here, so flush the output and leave.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_stack(stack_name: str, config_file: str | None = None, overrides: list[str] = (),
              record: str | None = None, duration_s: float | None = None,
              start_on_topic: str | None = None) -> int:
    """Start a stack (`more run sim|go2`); returns when it is stopped (or after duration_s,
    counted from the first recorded message on ``start_on_topic`` when given)."""
    if start_on_topic and not (record and duration_s):
        raise ValueError("start_on_topic needs record and duration_s")
    import rclpy

    stack = STACKS[stack_name]
    config = Path(config_file) if config_file else bringup_dir() / "config" / stack.config_file
    if not config.is_file():
        raise FileNotFoundError(f"parameter file {config} does not exist")
    parsed = parse_overrides(list(overrides))
    rclpy.init()
    children: list[subprocess.Popen] = []
    try:
        nodes = build_nodes(stack, config, parsed)
        ready = None
        if record:
            from more_policy.nodes.bags import BagRecorder

            recorder = BagRecorder(record)
            nodes.append(recorder)
            if start_on_topic:
                def ready() -> bool:
                    return recorder.counts.get(start_on_topic, 0) > 0
        children = start_child_nodes(stack, config, parsed)
        names = [n.get_name() for n in nodes] + [f"{c} (child process)"
                                                 for c in stack.child_processes]
        print(f"more run {stack_name}: {', '.join(names)} with {config}", file=sys.stderr)
        spin_nodes(nodes, duration_s, ready)
    finally:
        stop_children(children)
        if rclpy.ok():
            rclpy.shutdown()
    return 0
