"""The whole stack over real DDS, one OS process per node, with more_bringup/config/sim.yaml:

    go2_sim_node (MuJoCo, rt/lowstate + camera) <-> controller_node (rt/lowcmd) <- policy_node

The policy is a tiny MoRE model the fixture fine-tunes (a few seconds, teacher forcing) to
answer "walk forward at 0.3 m/s, trot" to the test's instruction, so the closed loop has a
known-good behaviour to check: the robot must walk toward the go-to target. Then malformed
messages on every input topic must not kill any node, and killing the policy must bring the
robot to a stand within the controller's command timeout.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mujoco")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from ros_procs import REPO, NodeProcess, Probe, isolated_domain  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from more_msgs.msg import Go2Command, PolicyStatus  # noqa: E402
from more_policy.data.ros_messages import (  # noqa: E402
    COMMAND_TOPIC,
    DIAGNOSTICS_TOPIC,
    EPISODE_TOPIC,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    STATUS_TOPIC,
)
from more_policy.nodes.go2_command import to_go2_command  # noqa: E402
from more_policy.nodes.interfaces import (  # noqa: E402
    COMMAND_QOS,
    INSTRUCTION_QOS,
    SENSOR_QOS,
    STATUS_QOS,
)
from more_policy.nodes.messages import rgb_to_image  # noqa: E402

INSTRUCTION = "go to the red ball"
WALK_SPEED = 0.3  # m/s
SIM_CONFIG = REPO / "more_bringup" / "config" / "sim.yaml"
TASK, SEED = "go_to", 1


# rt/lowcmd garbage for the sim, from a child process (the SDK allows one DDS domain per
# process): NaN targets with a valid CRC (must be ignored) and messages with a broken CRC.
LOWCMD_FUZZER = """
import sys, time, numpy as np
from more_policy.robot.go2 import MotorCommand
from more_policy.robot.go2_io import fill_lowcmd, new_lowcmd
from more_policy.robot.sdk_compat import init_channels
init_channels(int(sys.argv[1]), "lo")
from unitree_sdk2py.core.channel import ChannelPublisher
from unitree_sdk2py.idl.unitree_go.msg.dds_ import LowCmd_
publisher = ChannelPublisher("rt/lowcmd", LowCmd_)
publisher.Init()
time.sleep(1.5)  # discovery
nan = np.full(12, np.nan)
for k in range(int(sys.argv[2])):
    msg = fill_lowcmd(new_lowcmd(), MotorCommand(q=nan, kp=nan, kd=nan))
    if k % 2:
        msg.crc ^= 0x5A5A
    publisher.Write(msg)
    time.sleep(0.01)
"""


def walk_command(space) -> np.ndarray:
    command = space.default_command()  # stand, trot at 3 Hz
    command[space.index("vel_x")] = WALK_SPEED
    return command


def train_walker(directory, max_steps: int = 400) -> np.ndarray:
    """Fine-tune a tiny random MoRE policy to always walk forward; save it; return its bins."""
    import torch

    from more_policy.model.loading import load_policy
    from more_policy.sim.env import make_env

    policy = load_policy("random-tiny")
    space = policy.action_space
    target = torch.as_tensor(space.encode(walk_command(space)))[None].repeat(4, 1)  # (4, 12)
    env = make_env(TASK, seed=SEED, image_size=(120, 160))
    sim_frames = [env.reset(seed=s).image for s in range(6)]  # what the camera will show
    env.close()
    rng = np.random.default_rng(0)
    torch.manual_seed(0)  # LoRA dropout
    optimizer = torch.optim.Adam(policy.trainable_parameters(), lr=3e-3)
    result = None
    for step in range(max_steps):
        policy.train()
        images = [sim_frames[(2 * step + i) % 6] for i in range(3)] + [
            rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)]
        inputs = policy.prepare(images, [INSTRUCTION] * 4, action_bins=target)
        logits = policy(inputs).action_logits  # (4, 12, num_bins)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 target.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 24:  # stop as soon as greedy decoding gives the walk command
            policy.eval()
            result = np.asarray(policy.act(sim_frames, [INSTRUCTION] * 6).bins)
            if (result == target[0].numpy()).all():
                break
    assert (result == target[0].numpy()).all(), f"the walker did not converge: {result}"
    policy.save_pretrained(directory)
    return target[0].numpy()


def diagnostics(msg: DiagnosticArray) -> dict[str, str]:
    status = msg.status[0]
    return {"level": int.from_bytes(status.level, "little") if isinstance(status.level, bytes)
            else int(status.level), "message": status.message,
            **{kv.key: kv.value for kv in status.values}}


class Stack:
    def __init__(self, probe: Probe):
        self.probe = probe
        self.procs: dict[str, NodeProcess] = {}
        self.episodes = probe.listen(String, EPISODE_TOPIC, STATUS_QOS)
        self.diags = probe.listen(DiagnosticArray, DIAGNOSTICS_TOPIC, STATUS_QOS)
        self.commands = probe.listen(Go2Command, COMMAND_TOPIC, COMMAND_QOS)
        self.statuses = probe.listen(PolicyStatus, STATUS_TOPIC, STATUS_QOS)
        self.instructions = probe.publisher(String, INSTRUCTION_TOPIC, INSTRUCTION_QOS)
        self.walk_bins: np.ndarray | None = None

    def episode(self) -> dict:
        return json.loads(self.episodes[-1].data)

    def diag(self) -> dict:
        return diagnostics(self.diags[-1])

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{proc.output()[-3000:]}"
                         for name, proc in self.procs.items())


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    checkpoint = tmp_path_factory.mktemp("walker")
    with isolated_domain():
        sdk_domain = str(random.randint(1, 99))
        rclpy.init()
        probe = Probe()
        stack = Stack(probe)
        stack.sdk_domain = sdk_domain
        try:
            common = {"dds_domain_id": sdk_domain}
            stack.procs["sim"] = NodeProcess("more_policy.nodes.go2_sim_node",
                                             {**common, "task": TASK, "seed": SEED,
                                              "image_width": 160, "image_height": 120},
                                             params_file=SIM_CONFIG)
            stack.procs["controller"] = NodeProcess("more_policy.nodes.controller_node",
                                                    common, params_file=SIM_CONFIG)
            stack.walk_bins = train_walker(checkpoint)
            stack.procs["policy"] = NodeProcess("more_policy.nodes.policy_node",
                                                {"checkpoint": str(checkpoint)},
                                                params_file=SIM_CONFIG)
            assert stack.procs["policy"].wait_for_output("policy ready", 90), stack.logs()
            assert probe.wait_for(lambda: stack.diags and stack.diag()["phase"] == "walking",
                                  30), stack.logs()
            yield stack
        finally:
            for proc in stack.procs.values():
                proc.stop()
            probe.close()
            rclpy.shutdown()


@pytest.mark.timeout(120)
def test_instruction_makes_the_robot_walk_to_the_target(stack):
    start = stack.episode()
    assert start["instruction"] and not start["success"]
    stack.probe.publish_when_matched(stack.instructions, String(data=INSTRUCTION))
    assert stack.probe.wait_for(lambda: len(stack.commands) >= 3, 20), stack.logs()
    np.testing.assert_array_equal(np.asarray(stack.commands[-1].action_bins), stack.walk_bins)
    assert stack.probe.wait_for(lambda: stack.diag()["message"] == "tracking commands", 5), (
        stack.diag(), stack.logs())

    def walked() -> bool:
        now = stack.episode()
        return now["base_pose"][0] - start["base_pose"][0] > 1.0
    assert stack.probe.wait_for(walked, 30), (stack.episode(), stack.diag(), stack.logs())
    now = stack.episode()
    assert now["goal_distance"] < start["goal_distance"] - 0.7  # closer to the target
    assert now["base_pose"][2] > 0.2 and now["failure"] is None  # upright, walking
    assert stack.diag()["fault"] == ""
    statuses = [s for s in stack.statuses if s.total_ms > 0]
    assert statuses and all(s.state == "running" for s in statuses)
    assert np.median([s.image_age_ms for s in statuses]) < 500  # fresh sim frames


@pytest.mark.timeout(120)
def test_malformed_messages_on_every_input_kill_no_node(stack):
    from more_policy.actions import ActionSpace

    space = ActionSpace()
    lowcmd_fuzzer = subprocess.Popen([sys.executable, "-c", LOWCMD_FUZZER,
                                      stack.sdk_domain, "60"])
    rng = np.random.default_rng(7)
    images = stack.probe.publisher(Image, IMAGE_TOPIC, SENSOR_QOS)
    commands = stack.probe.publisher(Go2Command, COMMAND_TOPIC, COMMAND_QOS)
    before = int(stack.diag()["rejected_commands"])
    n = 40
    for k in range(n):
        frame = rgb_to_image(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
        [lambda f: setattr(f, "encoding", "32FC1"), lambda f: setattr(f, "height", 7),
         lambda f: setattr(f, "step", 1), lambda f: setattr(f, "data", b"")][k % 4](frame)
        images.publish(frame)
        bad = to_go2_command(space, walk_command(space))
        setattr(bad, space.names[k % 11], [math.nan, math.inf, -math.inf][k % 3])
        commands.publish(bad)
        junk = ["", "   ", "x" * 5000, "\x00\x07\n"][k % 4]
        stack.probe.publish_when_matched(stack.instructions, String(data=junk))
        time.sleep(0.02)
    assert lowcmd_fuzzer.wait(30) == 0
    time.sleep(1.0)
    for name, proc in stack.procs.items():
        assert proc.alive(), f"{name} died:\n{stack.logs()}"
    # Commands are keep-last-1: some NaN ones are overwritten before the controller takes them.
    assert stack.probe.wait_for(lambda: int(stack.diag()["rejected_commands"]) >= before + n // 4,
                                3), stack.diag()
    assert stack.diag()["fault"] == "", stack.diag()
    assert "dropping camera frame" in stack.procs["policy"].output()
    assert "-character instruction" in stack.procs["policy"].output()
    assert "ignoring LowCmd" in stack.procs["sim"].output()
    # The stack still works: the good instruction again, fresh commands, robot upright.
    count = len(stack.commands)
    stack.probe.publish_when_matched(stack.instructions, String(data=INSTRUCTION))
    assert stack.probe.wait_for(lambda: len(stack.commands) > count + 2, 15), stack.logs()
    assert stack.episode()["base_pose"][2] > 0.2


@pytest.mark.timeout(60)
def test_killing_the_policy_makes_the_controller_stand(stack):
    assert stack.diag()["message"] == "tracking commands", stack.diag()
    assert float(stack.diag()["active_vel_x"]) == pytest.approx(WALK_SPEED, abs=0.01)
    killed = time.monotonic()
    stack.procs["policy"].kill()

    def standing() -> bool:
        d = stack.diag()
        return d["command_timed_out"] == "True" and all(
            abs(float(d[f"active_{n}"])) < 1e-6 for n in ("vel_x", "vel_y", "yaw_rate"))
    assert stack.probe.wait_for(standing, 5), stack.diag()
    # command timeout 0.5 s (sim.yaml), seen through 2 Hz diagnostics and DDS
    assert time.monotonic() - killed < 0.5 + 1.0
    assert stack.probe.wait_for(lambda: stack.episode()["base_speed"] < 0.1, 5), stack.episode()
    assert stack.episode()["base_pose"][2] > 0.2  # standing, not fallen
    assert stack.diag()["fault"] == ""
