"""rosbag2 tools without a ROS install: record (mcap), offline evaluation, DDS replay.

* :class:`BagRecorder`: an rclpy node writing the stack's topics (raw CDR, exactly what went
  over DDS) to a rosbag2 mcap folder through ``rosbags``; the container runner adds it with
  ``--record``.
* :func:`replay_bag`: re-publishes a bag's inputs over DDS at recorded timing into a running
  stack while recording what the stack answers.

Offline evaluation (``more eval-bag``) lives in :mod:`more_policy.nodes.bag_eval` and reading
bags in :mod:`more_policy.data.rosbag`; neither needs a ROS runtime.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile

from more_policy.data.ros_messages import (
    COMMAND_TOPIC,
    DIAGNOSTICS_TOPIC,
    EPISODE_TOPIC,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    JOINT_STATES_TOPIC,
    STATUS_TOPIC,
    stamp_to_ns,
)
from more_policy.data.rosbag import typestore
from more_policy.nodes.interfaces import COMMAND_QOS, INSTRUCTION_QOS, SENSOR_QOS, STATUS_QOS


@dataclass(frozen=True)
class TopicSpec:
    name: str
    msgtype: str  # rosbag2 form, e.g. sensor_msgs/msg/Image
    qos: object


# What the stack's bags hold: inputs (camera, instruction) and outputs (commands, status...).
INPUT_TOPICS = (
    TopicSpec(IMAGE_TOPIC, "sensor_msgs/msg/Image", SENSOR_QOS),
    TopicSpec(INSTRUCTION_TOPIC, "std_msgs/msg/String", INSTRUCTION_QOS),
)
OUTPUT_TOPICS = (
    TopicSpec(COMMAND_TOPIC, "more_msgs/msg/Go2Command", COMMAND_QOS),
    TopicSpec(STATUS_TOPIC, "more_msgs/msg/PolicyStatus", STATUS_QOS),
    TopicSpec(JOINT_STATES_TOPIC, "sensor_msgs/msg/JointState", STATUS_QOS),
    TopicSpec(EPISODE_TOPIC, "std_msgs/msg/String", STATUS_QOS),
    TopicSpec(DIAGNOSTICS_TOPIC, "diagnostic_msgs/msg/DiagnosticArray", STATUS_QOS),
)
STACK_TOPICS = INPUT_TOPICS + OUTPUT_TOPICS
RECORD_DEPTH = 100


def _ros_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    import importlib

    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


# -- recording -----------------------------------------------------------------------------------
class BagRecorder(Node):
    """Records topics (raw CDR, as they went over DDS) into a new rosbag2 mcap folder."""

    def __init__(self, path: str | Path, topics: tuple[TopicSpec, ...] = STACK_TOPICS,
                 node_name: str = "bag_recorder", **node_kwargs) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        super().__init__(node_name, **node_kwargs)
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"bag {self.path} already exists")
        self._lock = threading.Lock()
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        store = typestore()
        self.counts: dict[str, int] = {}
        for spec in topics:
            connection = self._writer.add_connection(spec.name, spec.msgtype, typestore=store)
            self.counts[spec.name] = 0
            # The publishers' reliability, a deep queue (a recorder keeps all), volatile: it
            # matches volatile and transient-local writers alike, so the recorder hears a
            # latched and a plain `ros2 topic pub` /instruction, as the policy does.
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=RECORD_DEPTH,
                             reliability=spec.qos.reliability,
                             durability=DurabilityPolicy.VOLATILE)
            self.create_subscription(_ros_class(spec.msgtype), spec.name,
                                     self._writer_callback(spec.name, connection), qos, raw=True)
        self.get_logger().info(f"recording {len(topics)} topics to {self.path}")

    def _writer_callback(self, topic: str, connection):
        def write(data: bytes) -> None:
            stamp = self.get_clock().now().nanoseconds
            with self._lock:
                if self._writer is not None:
                    self._writer.write(connection, stamp, data)
                    self.counts[topic] += 1
        return write

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


# -- replay over DDS -----------------------------------------------------------------------------
def replay_bag(bag: str | Path, record: str | Path | None = None, speed: float = 1.0,
               topics: tuple[TopicSpec, ...] = INPUT_TOPICS, settle_s: float = 1.0,
               discovery_s: float = 1.0, restamp: bool = True) -> dict[str, int]:
    """Publish ``topics`` from ``bag`` at recorded timing; optionally record the answers.

    With ``restamp`` every header stamp is shifted so the first one reads "now" when it is
    published, so a stack's staleness checks see the frames as live (rosbag2 play keeps old
    stamps unless it publishes /clock). The shift comes from the first stamp, not the first
    log time: a sim-stack recording is stamped on the simulated clock (use_sim_time), the log
    times on the recorder's wall clock. Empty stamps stay empty. Without ``restamp`` the
    recorded CDR bytes go out unchanged. Returns how many messages were published per topic.
    """
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader

    if speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    wanted = {t.name: t for t in topics}
    own_context = not rclpy.ok()
    if own_context:
        rclpy.init()
    node = Node("bag_replay")
    publishers = {name: node.create_publisher(_ros_class(t.msgtype), name, t.qos)
                  for name, t in wanted.items()}
    recorder = BagRecorder(record, OUTPUT_TOPICS) if record else None
    executor = MultiThreadedExecutor(num_threads=2)
    if recorder is not None:
        executor.add_node(recorder)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    counts = dict.fromkeys(wanted, 0)
    try:
        # Readers must match before the first message (a volatile one, like the policy's
        # /instruction subscription, gets nothing sent earlier): wait up to discovery_s.
        deadline = time.monotonic() + discovery_s
        while time.monotonic() < deadline and not all(
                p.get_subscription_count() > 0 for p in publishers.values()):
            time.sleep(0.05)
        time.sleep(max(0.0, min(0.2, deadline - time.monotonic())))
        with Reader(Path(bag)) as reader:
            connections = [c for c in reader.connections if c.topic in wanted]
            start_wall, start_log, shift_ns = time.monotonic(), None, None
            for connection, log_ns, raw in reader.messages(connections=connections):
                if start_log is None:
                    start_log = log_ns
                delay = (log_ns - start_log) / 1e9 / speed - (time.monotonic() - start_wall)
                if delay > 0:
                    time.sleep(delay)
                msg_class = _ros_class(wanted[connection.topic].msgtype)
                if restamp and "header" in msg_class.get_fields_and_field_types():
                    msg = deserialize_message(bytes(raw), msg_class)
                    stamp = stamp_to_ns(msg.header.stamp)
                    if stamp:
                        if shift_ns is None:
                            shift_ns = node.get_clock().now().nanoseconds - stamp
                        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(
                            stamp + shift_ns, 10**9)
                    publishers[connection.topic].publish(msg)
                else:
                    publishers[connection.topic].publish(bytes(raw))
                counts[connection.topic] += 1
        time.sleep(settle_s)  # answers to the last inputs
    finally:
        executor.shutdown()
        spinner.join(timeout=2.0)
        if recorder is not None:
            recorder.destroy_node()
        node.destroy_node()
        if own_context and rclpy.ok():
            rclpy.shutdown()
    return counts
