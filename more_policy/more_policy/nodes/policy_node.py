"""policy_node: camera frames + /instruction -> MoRE -> /more/command and /more/status.

A new non-empty instruction starts an episode (the same text again while it runs continues it).
While it is active, every fresh camera frame (the newest one; older frames are dropped) goes
through ``MoREPolicy.act`` on a worker thread, so the subscription callbacks only store
messages and never wait for the model. A command with
terminate set ends the episode (the controller stops and stands on it) and the node idles
until the next instruction. Bad input (unsupported encoding or size, empty instruction,
non-finite output) is logged as a warning and dropped.

Run: ``python -m more_policy.nodes.policy_node --ros-args -p checkpoint:=random-tiny``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String

from more_msgs.msg import Go2Command, PolicyStatus
from more_policy.data.ros_messages import (
    COMMAND_TOPIC,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    STATUS_TOPIC,
    ImageError,
    image_to_rgb,
    stamp_to_ns,
)
from more_policy.model.loading import QUANTIZATION_NAMES, load_policy
from more_policy.nodes.go2_command import to_go2_command
from more_policy.nodes.interfaces import (
    COMMAND_QOS,
    INSTRUCTION_SUBSCRIPTION_QOS,
    SENSOR_QOS,
    STATUS_QOS,
    ParamSpec,
    declare_parameters,
)

PARAMETERS = (
    ParamSpec("checkpoint", "random-tiny",
              "MoRE checkpoint directory (save_pretrained output), or random-tiny / random-small "
              "for an untrained model of that size"),
    ParamSpec("quantization", "none", "backbone weight quantization: none | int8 | nf4"),
    ParamSpec("device", "cpu", "torch device for inference, e.g. cpu or cuda:0"),
    ParamSpec("seed", 0, "weight seed of a random-* checkpoint"),
    ParamSpec("image_topic", IMAGE_TOPIC, "sensor_msgs/Image camera topic (sensor-data QoS)"),
    ParamSpec("instruction_topic", INSTRUCTION_TOPIC,
              "std_msgs/String instruction topic (one reliable, volatile subscription: hears "
              "`ros2 topic pub` and transient-local publishers once it is up)"),
    ParamSpec("command_topic", COMMAND_TOPIC, "more_msgs/Go2Command output topic"),
    ParamSpec("status_topic", STATUS_TOPIC, "more_msgs/PolicyStatus output topic"),
    ParamSpec("max_rate_hz", 10.0, "upper bound on inferences per second (0 = as fast as frames)",
              dynamic=True),
    ParamSpec("image_max_age_s", 0.5,
              "frames older than this when inference starts are skipped [s]", dynamic=True),
    ParamSpec("max_instruction_chars", 500, "longer instructions are rejected with a warning",
              dynamic=True),
    ParamSpec("prompt_template", "",
              "prompt with an {instruction} slot; empty keeps the checkpoint's template",
              dynamic=True),
)
# How long destroy_node waits for an inference in flight before leaving it to die with the
# process (Ctrl-C must end the node within 2 s).
SHUTDOWN_JOIN_S = 0.5
# Smallest accepted value of the numeric run-time parameters.
_LOWER_BOUNDS = {"max_rate_hz": 0.0, "image_max_age_s": 0.001, "max_instruction_chars": 1}


@dataclass
class _Frame:
    rgb: np.ndarray  # (H, W, 3) uint8
    stamp_ns: int  # header stamp, or receive time when the camera left it empty
    seq: int


class PolicyNode(Node):
    """Thin rclpy wrapper around MoREPolicy.act (see the module docstring)."""

    def __init__(self, policy=None, **node_kwargs) -> None:
        super().__init__("policy_node", **node_kwargs)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.params = declare_parameters(self, PARAMETERS)  # overrides pass the check too
        if policy is None:
            self.get_logger().info(f"loading policy {self.params['checkpoint']!r} "
                                   f"({self.params['quantization']}, {self.params['device']})")
            policy = load_policy(self.params["checkpoint"], self.params["quantization"],
                                 self.params["device"], self.params["seed"])
        self.policy = policy
        self._checkpoint_template = self.policy.config.prompt_template
        self.action_space = policy.action_space

        self._lock = threading.Condition()
        self._frame: _Frame | None = None  # newest frame only
        self._frame_seq = 0
        self._used_seq = 0
        self._instruction = ""
        self._episode_id = 0
        self._running = False
        self._shutdown = False
        self._last_infer = 0.0

        self.command_pub = self.create_publisher(Go2Command, self.params["command_topic"],
                                                 COMMAND_QOS)
        self.status_pub = self.create_publisher(PolicyStatus, self.params["status_topic"],
                                                STATUS_QOS)
        self.create_subscription(Image, self.params["image_topic"], self._on_image, SENSOR_QOS)
        self.create_subscription(String, self.params["instruction_topic"], self._on_instruction,
                                 INSTRUCTION_SUBSCRIPTION_QOS)
        self._worker = threading.Thread(target=self._inference_loop, name="more_policy_infer",
                                        daemon=True)
        self._worker.start()
        self.get_logger().info("policy ready; waiting for an instruction on "
                               f"{self.params['instruction_topic']}")

    # -- parameters ----------------------------------------------------------------------------
    @staticmethod
    def _check_values(values: dict) -> None:
        if values.get("quantization", "none") not in QUANTIZATION_NAMES:
            raise ValueError(f"parameter quantization must be one of {QUANTIZATION_NAMES}, got "
                             f"{values['quantization']!r}")
        for name, low in _LOWER_BOUNDS.items():
            if name in values and not values[name] >= low:
                raise ValueError(f"parameter {name} must be >= {low}, got {values[name]}")
        template = values.get("prompt_template", "")
        if template and "{instruction}" not in template:
            raise ValueError("parameter prompt_template needs an {instruction} slot, got "
                             f"{template!r}")

    def _check_parameters(self, params) -> SetParametersResult:
        """Reject a run-time change with a reason (read-only ones never get here)."""
        try:
            self._check_values({p.name: p.value for p in params})
        except ValueError as e:
            return SetParametersResult(successful=False, reason=str(e))
        return SetParametersResult(successful=True)

    # -- subscription callbacks: store and wake the worker, nothing else -----------------------
    def _on_image(self, msg: Image) -> None:
        try:
            rgb = image_to_rgb(msg)
        except ImageError as e:
            self.get_logger().warning(f"dropping camera frame: {e}", throttle_duration_sec=2.0)
            return
        stamp_ns = stamp_to_ns(msg.header.stamp) or self.get_clock().now().nanoseconds
        with self._lock:
            self._frame_seq += 1
            self._frame = _Frame(rgb, stamp_ns, self._frame_seq)
            self._lock.notify()

    def _on_instruction(self, msg: String) -> None:
        text = msg.data.strip()
        if not text:
            self.get_logger().warning("ignoring empty instruction")
            return
        if len(text) > self.params["max_instruction_chars"]:
            self.get_logger().warning(f"ignoring a {len(text)}-character instruction (limit "
                                      f"{self.params['max_instruction_chars']})")
            return
        with self._lock:
            if self._running and text == self._instruction:  # a re-sent instruction (e.g.
                return  # `ros2 topic pub` at 1 Hz) continues the episode, it does not restart it
            self._episode_id += 1
            self._instruction = text
            self._running = True
            self._used_seq = self._frame_seq  # act on frames that arrive from now on
            episode = self._episode_id
            self._lock.notify()
        self.get_logger().info(f"episode {episode}: {text!r}")
        self._publish_status("running", text, episode)

    # -- worker thread -------------------------------------------------------------------------
    def _next_frame(self) -> tuple[_Frame, str, int] | None:
        """Block until an instruction is active and a frame newer than the last one used exists."""
        with self._lock:
            while not self._shutdown and self.context.ok():
                if self._running and self._frame is not None and \
                        self._frame.seq > self._used_seq:
                    self._used_seq = self._frame.seq
                    return self._frame, self._instruction, self._episode_id
                self._lock.wait(timeout=0.5)
        return None

    def _inference_loop(self) -> None:
        while True:
            max_rate = self.params["max_rate_hz"]
            if max_rate > 0:
                wait = self._last_infer + 1.0 / max_rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            job = self._next_frame()
            if job is None:
                return
            try:
                self._act(*job)
            except Exception as e:  # a model failure must not kill the node: report and go on
                if self._stopping():
                    return
                self.get_logger().error(f"inference failed: {type(e).__name__}: {e}")
                self._publish_status("error", job[1], job[2])

    def _act(self, frame: _Frame, instruction: str, episode: int) -> None:
        start_ns = self.get_clock().now().nanoseconds
        image_age_ms = (start_ns - frame.stamp_ns) / 1e6
        if image_age_ms > 1e3 * self.params["image_max_age_s"]:
            self.get_logger().warning(f"skipping a frame {image_age_ms:.0f} ms old",
                                      throttle_duration_sec=2.0)
            return
        self._last_infer = time.monotonic()
        self.policy.config.prompt_template = (self.params["prompt_template"]
                                              or self._checkpoint_template)
        result = self.policy.act([frame.rgb], [instruction])
        values = np.asarray(result.values, dtype=np.float64)[0]  # (12,) SI units
        if not np.all(np.isfinite(values)):
            self.get_logger().warning("policy produced non-finite values; command dropped")
            self._publish_status("error", instruction, episode)
            return
        with self._lock:
            if episode != self._episode_id:  # a new instruction arrived during inference
                return
            terminate = bool(self.action_space.is_terminate(values))
            if terminate:
                self._running = False
        stamp = self.get_clock().now()
        command = to_go2_command(
            self.action_space, values, bins=np.asarray(result.bins)[0],
            token_offset=self.policy.token_offset, episode_id=episode, stamp=stamp.to_msg())
        self._publish(self.command_pub, command)
        total_ms = (stamp.nanoseconds - start_ns) / 1e6
        self._publish_status("terminated" if terminate else "running", instruction, episode,
                             result=result, image_age_ms=image_age_ms, total_ms=total_ms)
        if terminate:
            self.get_logger().info(f"episode {episode} terminated by the policy; idle until the "
                                   "next instruction")

    def _publish_status(self, state: str, instruction: str, episode: int, result=None,
                        image_age_ms: float = 0.0, total_ms: float = 0.0) -> None:
        status = PolicyStatus()
        status.header.stamp = self.get_clock().now().to_msg()
        status.instruction = instruction if state == "running" or state == "error" else ""
        status.episode_id = episode
        status.state = state
        status.image_age_ms = float(image_age_ms)
        status.total_ms = float(total_ms)
        if result is not None:
            status.preprocess_ms = float(result.timings.get("prepare_ms", 0.0))
            status.prefill_ms = float(result.prefill_ms)
            status.decode_ms = float(result.decode_ms)
            status.q_values = [float(q) for q in np.asarray(result.q_values)[0]]
            usage = np.asarray(result.expert_usage, dtype=np.float64)  # (layers, experts)
            if usage.size:
                status.expert_load = [float(x) for x in usage.mean(axis=0)]
                status.expert_load_max = float(usage.max())
        self._publish(self.status_pub, status)

    def _stopping(self) -> bool:
        return self._shutdown or not self.context.ok()

    def _publish(self, publisher, msg) -> None:
        """Publish unless the node is going away. Ctrl-C shuts the context down from the signal
        handler while the worker may be mid-inference; its late result is dropped quietly."""
        with self._lock:  # destroy_node takes it too: no publish races the publisher's teardown
            if self._stopping():
                return
            try:
                publisher.publish(msg)
            except Exception:
                if not self._stopping():
                    raise

    def destroy_node(self) -> None:
        with self._lock:
            self._shutdown = True
            self._lock.notify_all()
        # An inference in flight cannot be interrupted; its result is dropped (_publish), so
        # shutdown does not wait for it (the worker is a daemon thread).
        self._worker.join(timeout=SHUTDOWN_JOIN_S)
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    from more_policy.nodes.runner import node_main

    node_main(PolicyNode, args)


if __name__ == "__main__":
    main()
