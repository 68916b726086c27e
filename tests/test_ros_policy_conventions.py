"""ROS conventions of policy_node over real DDS: one /instruction subscription that hears
transient-local and plain volatile publishers without QoS warnings on either side (and the bag
recorder hears the same),
read-only vs run-time parameters, and a clean SIGTERM.

One policy_node process (tiny random model) serves the module; the last test stops it.
"""

from __future__ import annotations

import signal

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("more_msgs.msg")

from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import GetParameters, SetParameters  # noqa: E402
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_procs import NodeProcess, Probe, isolated_domain  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from more_msgs.msg import PolicyStatus  # noqa: E402
from more_policy.data.ros_messages import INSTRUCTION_TOPIC, STATUS_TOPIC  # noqa: E402
from more_policy.data.rosbag import read_bag  # noqa: E402
from more_policy.nodes.bags import BagRecorder  # noqa: E402
from more_policy.nodes.interfaces import INSTRUCTION_QOS, STATUS_QOS  # noqa: E402

# `ros2 topic pub` defaults: reliable, volatile.
TOPIC_PUB_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.VOLATILE)
LATCHED = "go to the red ball"
PLAIN = "go to the blue box"


class Events:
    """Counts incompatible-QoS events an endpoint reports (the source of the QoS warnings)."""

    def __init__(self):
        self.incompatible = 0

    def __call__(self, _event) -> None:
        self.incompatible += 1


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with isolated_domain():
        rclpy.init()
        probe = Probe()
        node = recorder = None
        try:
            latched_events, plain_events = Events(), Events()
            latched = probe.node.create_publisher(
                String, INSTRUCTION_TOPIC, INSTRUCTION_QOS,
                event_callbacks=PublisherEventCallbacks(incompatible_qos=latched_events))
            statuses = probe.listen(PolicyStatus, STATUS_TOPIC, STATUS_QOS)
            bag = tmp_path_factory.mktemp("qos") / "bag"
            recorder = BagRecorder(bag)
            probe._executor.add_node(recorder)
            node = NodeProcess("more_policy.nodes.policy_node", {"checkpoint": "random-tiny"})
            assert node.wait_for_output("policy ready", timeout=120), node.output()
            yield {"probe": probe, "node": node, "recorder": recorder, "bag": bag,
                   "statuses": statuses, "latched": latched, "latched_events": latched_events,
                   "plain_events": plain_events}
        finally:
            if node is not None:
                node.stop()
            if recorder is not None:
                probe._executor.remove_node(recorder)
                recorder.destroy_node()
            probe.close()
            rclpy.shutdown()


def heard(statuses, text: str) -> bool:
    return any(s.state == "running" and s.instruction == text for s in statuses)


@pytest.mark.timeout(120)
def test_latched_and_plain_instructions_are_heard_quietly_and_recorded(stack, capfd):
    probe = stack["probe"]
    # Two readers (policy + recorder), one subscription each, matched by a transient-local...
    assert probe.wait_for(lambda: stack["latched"].get_subscription_count() == 2, 10)
    stack["latched"].publish(String(data=LATCHED))
    assert probe.wait_for(lambda: heard(stack["statuses"], LATCHED), 20), stack["node"].output()
    # ... and by a plain `ros2 topic pub`-style publisher.
    plain = probe.node.create_publisher(
        String, INSTRUCTION_TOPIC, TOPIC_PUB_QOS,
        event_callbacks=PublisherEventCallbacks(incompatible_qos=stack["plain_events"]))
    assert probe.wait_for(lambda: plain.get_subscription_count() == 2, 10)
    plain.publish(String(data=PLAIN))
    assert probe.wait_for(lambda: heard(stack["statuses"], PLAIN), 20), stack["node"].output()
    assert probe.wait_for(lambda: stack["recorder"].counts[INSTRUCTION_TOPIC] >= 2, 5)

    assert stack["latched_events"].incompatible == 0
    assert stack["plain_events"].incompatible == 0
    log = stack["node"].output()
    assert "incompatible" not in log.lower() and "QoS" not in log, log
    assert "incompatible" not in capfd.readouterr().err.lower()  # the recorder's side
    stack["recorder"].close()
    recorded = [m.msg.data for m in read_bag(stack["bag"], (INSTRUCTION_TOPIC,))]
    assert recorded == [LATCHED, PLAIN]


@pytest.mark.timeout(30)
def test_a_transient_local_only_reader_would_warn(stack):
    # The check above can fail: the old second subscription (transient local) is incompatible
    # with a plain publisher, and DDS reports exactly that.
    probe = stack["probe"]
    events = Events()
    probe.node.create_subscription(
        String, "/qos_check", lambda _m: None, INSTRUCTION_QOS,
        event_callbacks=SubscriptionEventCallbacks(incompatible_qos=events))
    probe.node.create_publisher(String, "/qos_check", TOPIC_PUB_QOS)
    assert probe.wait_for(lambda: events.incompatible > 0, 10)


def _value(value) -> ParameterValue:
    if isinstance(value, str):
        return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value))


def set_parameter(probe: Probe, name: str, value):
    client = probe.node.create_client(SetParameters, "/policy_node/set_parameters")
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(SetParameters.Request(
        parameters=[Parameter(name=name, value=_value(value))]))
    assert probe.wait_for(future.done, 10)
    return future.result().results[0]


def get_parameter(probe: Probe, name: str) -> ParameterValue:
    client = probe.node.create_client(GetParameters, "/policy_node/get_parameters")
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(GetParameters.Request(names=[name]))
    assert probe.wait_for(future.done, 10)
    return future.result().values[0]


@pytest.mark.timeout(60)
def test_read_only_parameters_are_rejected_run_time_ones_checked(stack):
    probe = stack["probe"]
    result = set_parameter(probe, "checkpoint", "/elsewhere")
    assert not result.successful and "read-only" in result.reason.lower()
    assert get_parameter(probe, "checkpoint").string_value == "random-tiny"

    assert set_parameter(probe, "max_rate_hz", 4.0).successful
    assert get_parameter(probe, "max_rate_hz").double_value == 4.0
    result = set_parameter(probe, "max_rate_hz", -1.0)
    assert not result.successful and "max_rate_hz" in result.reason
    assert get_parameter(probe, "max_rate_hz").double_value == 4.0
    result = set_parameter(probe, "prompt_template", "no slot here")
    assert not result.successful and "{instruction}" in result.reason


@pytest.mark.timeout(60)
def test_sigterm_stops_within_two_seconds_without_traceback(stack):
    seconds, code = stack["node"].stop_timed(signal.SIGTERM)
    log = stack["node"].output()
    assert code == 0, log
    assert seconds < 2.0, f"took {seconds:.2f} s\n{log}"
    assert "Traceback" not in log and "context is invalid" not in log, log
