"""TF for the nodes: tf2_msgs/TFMessage on /tf and /tf_static, the way tf2_ros broadcasts.

tf2_ros (Python) is not on PyPI and only its message is needed, so the nodes publish
TFMessage themselves, with tf2_ros's QoS: /tf reliable, volatile, depth 100
(TransformBroadcaster); /tf_static reliable, transient local, depth 1, every static transform
in one message (StaticTransformBroadcaster), so a listener that starts later still gets them.
tf2_msgs comes from the ROS 2 install, or on pip-only machines from the vendored copy that
scripts/setup.sh builds (ros2_ws/vendor/tf2_msgs). The topics are absolute (tf2's).
"""

from __future__ import annotations

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from tf2_msgs.msg import TFMessage

from more_policy.nodes.messages import camera_mount_transforms
from more_policy.vision import CameraConfig

TF_TOPIC, TF_STATIC_TOPIC = "/tf", "/tf_static"
TF_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                    reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                           reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


class TfBroadcaster:
    """Publishes the static camera mount once (latched) and dynamic transforms on demand."""

    def __init__(self, node: Node, camera: CameraConfig):
        self._tf = node.create_publisher(TFMessage, TF_TOPIC, TF_QOS)
        self._static = node.create_publisher(TFMessage, TF_STATIC_TOPIC, TF_STATIC_QOS)
        stamp = node.get_clock().now().to_msg()  # static: tf2 ignores the stamp
        self._static.publish(TFMessage(transforms=camera_mount_transforms(camera, stamp)))

    def send(self, *transforms) -> None:
        """Publish geometry_msgs/TransformStamped on /tf."""
        self._tf.publish(TFMessage(transforms=list(transforms)))
