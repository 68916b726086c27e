"""policy_node in its own OS process over real DDS, with a tiny random MoRE model.

One node process serves the whole module (building the model takes seconds). Instructions come
from a transient-local publisher (as the sim's) and, in one test, a plain volatile one.
"""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("more_msgs.msg")

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_procs import NodeProcess, Probe, isolated_domain  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from more_msgs.msg import Go2Command, PolicyStatus  # noqa: E402
from more_policy.actions import ActionSpace  # noqa: E402
from more_policy.data.ros_messages import (  # noqa: E402
    COMMAND_TOPIC,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    STATUS_TOPIC,
)
from more_policy.nodes.interfaces import (  # noqa: E402
    COMMAND_QOS,
    INSTRUCTION_QOS,
    SENSOR_QOS,
    STATUS_QOS,
)
from more_policy.nodes.messages import rgb_to_image  # noqa: E402

# What `ros2 topic pub` offers by default: reliable, volatile.
TOPIC_PUB_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.VOLATILE)
FIRST_INSTRUCTION = "go to the red ball"
SECOND_INSTRUCTION = "go to the blue box"
STOP_INSTRUCTION = "distinguish letter a"


def pick_frames(policy):
    """From candidate frames, one on which the (random) policy keeps going for both normal
    instructions and one on which it terminates under STOP_INSTRUCTION."""
    rng = np.random.default_rng(0)
    candidates = [np.full((96, 128, 3), v, np.uint8) for v in (0, 128, 255)]
    candidates += [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(12)]
    space = policy.action_space
    steady = stopper = None
    for rgb in candidates:
        going = [not space.is_terminate(policy.act([rgb], [text]).values[0])
                 for text in (FIRST_INSTRUCTION, SECOND_INSTRUCTION)]
        if steady is None and all(going):
            steady = rgb
        if stopper is None and space.is_terminate(policy.act([rgb], [STOP_INSTRUCTION]).values[0]):
            stopper = rgb
    assert steady is not None and stopper is not None, "no suitable frames for this random model"
    return steady, stopper


class Stack:
    def __init__(self, probe: Probe):
        self.probe = probe
        self.node: NodeProcess | None = None
        self.commands = probe.listen(Go2Command, COMMAND_TOPIC, COMMAND_QOS)
        self.statuses = probe.listen(PolicyStatus, STATUS_TOPIC, STATUS_QOS)
        self.images = probe.publisher(Image, IMAGE_TOPIC, SENSOR_QOS)
        self.instructions = probe.publisher(String, INSTRUCTION_TOPIC, INSTRUCTION_QOS)
        self.policy = None
        self.steady = self.stopper = None

    def frame(self, rgb: np.ndarray | None = None) -> Image:
        rgb = self.steady if rgb is None else rgb
        return rgb_to_image(rgb, stamp=self.probe.node.get_clock().now().to_msg())

    def settle(self, quiet: float = 0.6) -> int:
        """Wait until no command arrived for ``quiet`` seconds; returns the command count."""
        count = -1
        while count != len(self.commands):
            count = len(self.commands)
            time.sleep(quiet)
        return count

    def send_frames_until(self, predicate, timeout: float, rgb=None, period: float = 0.1) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.images.publish(self.frame(rgb))
            if predicate():
                return True
            time.sleep(period)
        return predicate()


@pytest.fixture(scope="module")
def stack():
    from more_policy.model.loading import load_policy

    with isolated_domain():
        rclpy.init()
        probe = Probe()
        stack = Stack(probe)
        try:
            stack.node = NodeProcess("more_policy.nodes.policy_node",
                                     {"checkpoint": "random-tiny", "max_rate_hz": 20.0,
                                      "image_max_age_s": 1.0})
            # The same checkpoint in this process: the node must answer exactly like it.
            stack.policy = load_policy("random-tiny")
            stack.steady, stack.stopper = pick_frames(stack.policy)
            assert stack.node.wait_for_output("policy ready", timeout=90), stack.node.output()
            assert probe.wait_for(lambda: stack.instructions.get_subscription_count() > 0, 10)
            stack.probe.publish_when_matched(stack.instructions, String(data=FIRST_INSTRUCTION))
            yield stack
        finally:
            if stack.node is not None:
                stack.node.stop()
            probe.close()
            rclpy.shutdown()


@pytest.mark.timeout(150)
def test_instruction_and_frames_give_commands(stack):
    space = ActionSpace()
    ok = stack.send_frames_until(lambda: len(stack.commands) >= 3, timeout=30)
    assert ok, stack.node.output()
    cmd = stack.commands[-1]
    assert cmd.episode_id == 1
    assert cmd.header.frame_id == "base_link"
    bins = np.asarray(cmd.action_bins, dtype=np.int64)
    assert np.all((bins >= 0) & (bins < space.num_bins))
    tokens = np.asarray(cmd.token_ids)
    assert np.all(tokens - bins == tokens[0] - bins[0]) and tokens[0] >= bins[0]
    values = space.from_go2_command(cmd)
    np.testing.assert_allclose(values[:11], space.decode(bins)[:11], atol=1e-5)
    expected = stack.policy.act([stack.steady], [FIRST_INSTRUCTION])
    np.testing.assert_array_equal(bins, np.asarray(expected.bins)[0])
    np.testing.assert_array_equal(tokens, np.asarray(expected.token_ids)[0])
    assert not cmd.terminate

    assert stack.probe.wait_for(lambda: any(s.total_ms > 0 for s in stack.statuses), 5)
    status = [s for s in stack.statuses if s.total_ms > 0][-1]
    assert status.instruction == FIRST_INSTRUCTION and status.state == "running"
    assert status.episode_id == 1
    assert status.prefill_ms > 0 and 0 < status.decode_ms <= status.total_ms
    assert np.all((np.asarray(status.q_values) > 0) & (np.asarray(status.q_values) < 1))
    assert len(status.expert_load) > 1
    np.testing.assert_allclose(sum(status.expert_load), 1.0, atol=1e-3)


@pytest.mark.timeout(120)
def test_new_instruction_starts_a_new_episode(stack):
    # The same text again (e.g. `ros2 topic pub` at 1 Hz) continues the running episode.
    stack.probe.publish_when_matched(stack.instructions, String(data=FIRST_INSTRUCTION))
    count = stack.settle()
    assert stack.send_frames_until(lambda: len(stack.commands) > count + 2, timeout=20)
    assert {c.episode_id for c in stack.commands} == {1}
    stack.probe.publish_when_matched(stack.instructions, String(data=SECOND_INSTRUCTION))
    assert stack.send_frames_until(
        lambda: any(c.episode_id == 2 for c in stack.commands), timeout=20), stack.node.output()
    assert any(s.instruction == SECOND_INSTRUCTION and s.state == "running"
               for s in stack.statuses)
    cmd = [c for c in stack.commands if c.episode_id == 2][-1]
    expected = stack.policy.act([stack.steady], [SECOND_INSTRUCTION])
    np.testing.assert_array_equal(np.asarray(cmd.action_bins), np.asarray(expected.bins)[0])


@pytest.mark.timeout(120)
def test_bad_input_warns_and_node_survives(stack):
    good = stack.frame()
    assert good.height > 7
    bad_frames = []
    for change in ({"encoding": "16UC1"}, {"encoding": "yuv422"}, {"height": good.height + 7},
                   {"step": 5}, {"width": 0, "height": 0}, {"data": b"\x00" * 11}):
        msg = stack.frame()
        for key, value in change.items():
            setattr(msg, key, value)
        bad_frames.append(msg)
    before = stack.settle()
    for msg in bad_frames * 3:
        stack.images.publish(msg)
        time.sleep(0.01)
    stack.probe.publish_when_matched(stack.instructions, String(data="   "))  # empty: ignored
    # Under load, delivery and the node's log can lag by more than a second: wait for them.
    assert stack.node.wait_for_output("ignoring empty instruction", timeout=15), \
        stack.node.output()
    assert stack.node.alive(), stack.node.output()
    assert len(stack.commands) == before  # nothing came out of the bad frames
    log = stack.node.output()
    assert "dropping camera frame" in log
    # Still serving: the empty instruction did not end or replace the episode.
    assert stack.send_frames_until(lambda: len(stack.commands) > before, timeout=20), log
    assert stack.commands[-1].episode_id == 2


@pytest.mark.timeout(60)
def test_stale_frames_are_skipped(stack):
    before = stack.settle()
    old = stack.frame()
    old.header.stamp.sec -= 10  # 10 s old
    for _ in range(5):
        stack.images.publish(old)
        time.sleep(0.05)
    time.sleep(0.5)
    assert len(stack.commands) == before
    assert stack.node.wait_for_output("ms old", timeout=5)


@pytest.mark.timeout(60)
def test_terminate_ends_the_episode_and_idles(stack):
    stack.probe.publish_when_matched(stack.instructions, String(data=STOP_INSTRUCTION))
    assert stack.send_frames_until(lambda: any(c.terminate for c in stack.commands), timeout=20,
                                   rgb=stack.stopper), stack.node.output()
    stop = [c for c in stack.commands if c.terminate][-1]
    assert stop.episode_id == 3
    assert stack.probe.wait_for(lambda: any(s.state == "terminated" and s.episode_id == 3
                                            for s in stack.statuses), 5)
    # Idle: more frames produce nothing until the next instruction.
    count = stack.settle()
    for _ in range(10):
        stack.images.publish(stack.frame())
        time.sleep(0.05)
    time.sleep(0.5)
    assert len(stack.commands) == count
    assert "episode 3 terminated" in stack.node.output()
    stack.probe.publish_when_matched(stack.instructions, String(data=FIRST_INSTRUCTION))
    assert stack.send_frames_until(lambda: any(c.episode_id == 4 for c in stack.commands), 20)


@pytest.mark.timeout(60)
def test_plain_volatile_publisher_is_heard(stack):
    # `ros2 topic pub` offers volatile durability, which a transient-local reader alone ignores.
    volatile = stack.probe.publisher(String, INSTRUCTION_TOPIC, TOPIC_PUB_QOS)
    assert stack.probe.wait_for(lambda: volatile.get_subscription_count() > 0, 10)
    volatile.publish(String(data=SECOND_INSTRUCTION))
    assert stack.send_frames_until(lambda: any(c.episode_id == 5 for c in stack.commands), 20), \
        stack.node.output()


@pytest.mark.timeout(60)
def test_clean_shutdown_on_sigint_while_inferring(stack):
    # Last in the module: Ctrl-C in the middle of an episode (the worker busy with the model)
    # ends the node within 2 s, exit code 0, no traceback from a late publish.
    count = len(stack.commands)
    assert stack.send_frames_until(lambda: len(stack.commands) > count + 2, timeout=20)
    stack.images.publish(stack.frame())
    seconds, code = stack.node.stop_timed(signal.SIGINT)
    log = stack.node.output()
    assert code == 0, log
    assert seconds < 2.0, f"took {seconds:.2f} s to stop\n{log}"
    assert "Traceback" not in log and "context is invalid" not in log, log
