"""rosbag2 tools: `more eval-bag` on a bag written here with rosbags and on a bag the running
stack recorded (policy_node in its own process, BagRecorder here), and DDS replay of that bag
into the running policy."""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags")

from ros_procs import NodeProcess, Probe, isolated_domain  # noqa: E402
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402

from more_policy.actions import ActionSpace  # noqa: E402
from more_policy.data.ros_messages import (  # noqa: E402
    COMMAND_TOPIC,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    STATUS_TOPIC,
)
from more_policy.data.rosbag import TruncatedBagWarning, read_bag, typestore  # noqa: E402
from more_policy.nodes.bag_eval import eval_bag  # noqa: E402

INSTRUCTION = "go to the red ball"
FRAME_PERIOD_NS = 100_000_000  # 10 Hz camera
IMAGE_AGE_MS, TOTAL_MS = 30.0, 50.0  # what the fake recording's statuses report


@pytest.fixture(scope="module")
def policy():
    from more_policy.model.loading import load_policy

    return load_policy("random-tiny")


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(n)]


def write_bag(path, rgbs, recorded_bins, space, start_ns=1_000_000_000_000,
              storage=StoragePlugin.MCAP, image_format=None,
              instruction_topic=INSTRUCTION_TOPIC):
    """A recording like the stack's, in log-time order: frames at 10 Hz (raw rgb8, or
    ``image_format`` 'jpeg'/'png' on the realsense-ros <camera>/compressed topic), one
    instruction, a command + status for every other frame (the policy skipping frames),
    commands = ``recorded_bins``."""
    store = typestore()
    T = store.types

    def stamp(ns):
        return T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)

    def header(ns, frame_id=""):
        return T["std_msgs/msg/Header"](stamp=stamp(ns), frame_id=frame_id)

    def image(rgb, t):
        if image_format is None:
            return T["sensor_msgs/msg/Image"](
                header=header(t, "camera"), height=rgb.shape[0], width=rgb.shape[1],
                encoding="rgb8", is_bigendian=0, step=3 * rgb.shape[1], data=rgb.reshape(-1))
        encoded = cv2.imencode(f".{image_format}", rgb[..., ::-1])[1]  # as image_transport
        return T["sensor_msgs/msg/CompressedImage"](
            header=header(t, "camera"), format=f"rgb8; {image_format} compressed bgr8",
            data=encoded.reshape(-1))

    image_topic, image_type = (IMAGE_TOPIC, "sensor_msgs/msg/Image") if image_format is None \
        else (f"{IMAGE_TOPIC}/compressed", "sensor_msgs/msg/CompressedImage")
    records = [(start_ns - 10**8, instruction_topic, T["std_msgs/msg/String"](data=INSTRUCTION))]
    for k, rgb in enumerate(rgbs):
        t = start_ns + k * FRAME_PERIOD_NS
        records.append((t + 2_000_000, image_topic, image(rgb, t)))
    for j, bins in enumerate(recorded_bins):
        t_frame = start_ns + 2 * j * FRAME_PERIOD_NS
        t_cmd = t_frame + int(1e6 * (IMAGE_AGE_MS + TOTAL_MS))
        values = space.decode(bins)
        fields = {n: float(values[i]) for i, n in enumerate(space.names[:11])}
        records.append((t_cmd + 1_000_000, COMMAND_TOPIC, T["more_msgs/msg/Go2Command"](
            header=header(t_cmd, "base_link"), **fields,
            terminate=bool(space.is_terminate(values)),
            action_bins=np.asarray(bins, np.uint8), token_ids=np.full(12, -1, np.int32),
            episode_id=1)))
        records.append((t_cmd + 2_000_000, STATUS_TOPIC, T["more_msgs/msg/PolicyStatus"](
            header=header(t_cmd + 10**6), instruction=INSTRUCTION, episode_id=1,
            state="running", image_age_ms=IMAGE_AGE_MS, preprocess_ms=1.0,
            prefill_ms=20.0, decode_ms=29.0, total_ms=TOTAL_MS,
            q_values=np.full(12, 0.5, np.float32), expert_load=np.full(4, 0.25, np.float32),
            expert_load_max=0.25)))
    with Writer(path, version=9, storage_plugin=storage) as writer:
        conns = {topic: writer.add_connection(topic, msgtype, typestore=store)
                 for topic, msgtype in ((image_topic, image_type),
                                        (instruction_topic, "std_msgs/msg/String"),
                                        (COMMAND_TOPIC, "more_msgs/msg/Go2Command"),
                                        (STATUS_TOPIC, "more_msgs/msg/PolicyStatus"))}
        for ns, topic, msg in sorted(records, key=lambda r: r[0]):
            writer.write(conns[topic], ns, store.serialize_cdr(msg, msg.__msgtype__))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_eval_bag_cli_on_a_bag_written_with_rosbags(policy, tmp_path, capsys):
    from more_policy.nodes.cli import register

    space = policy.action_space
    rgbs = frames(12)
    used = rgbs[::2]  # the frames the recorded commands came from
    truth = np.stack([np.asarray(policy.act([rgb], [INSTRUCTION]).bins)[0] for rgb in used])
    recorded = truth.copy()
    recorded[1::2, 0] = (recorded[1::2, 0] + 3) % 256  # every other command: vel_x 3 bins off
    recorded[2, 11] = 255 - recorded[2, 11]  # one flipped terminate decision
    write_bag(tmp_path / "bag", rgbs, recorded, space)

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["eval-bag", str(tmp_path / "bag"), "--checkpoint", "random-tiny",
                              "--out", str(tmp_path / "out"), "--batch-size", "4"])
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((tmp_path / "out" / "eval_bag.json").read_text())
    assert (tmp_path / "out" / "eval_bag.png").stat().st_size > 10_000
    assert printed["samples"] == report["samples"] == len(used)
    assert report["frames_matched_exactly"] == 1.0
    assert report["token_accuracy"] == pytest.approx((truth == recorded).mean())
    assert report["per_dimension"]["vel_x"]["token_accuracy"] == pytest.approx(0.5)
    # 3 bins off on half the samples: the SI error is exactly 1.5 bin widths on average
    width = space.bin_width[0]
    assert report["per_dimension"]["vel_x"]["mae"] == pytest.approx(1.5 * width, rel=1e-4)
    assert report["per_dimension"]["vel_y"]["mae"] == pytest.approx(0.0, abs=1e-6)
    pred_t, rec_t = truth[:, 11] >= 128, recorded[:, 11] >= 128
    terminate = report["terminate"]
    assert terminate["true_positives"] == int(np.sum(pred_t & rec_t))
    assert terminate["false_positives"] + terminate["false_negatives"] == 1
    assert report["latency_ms"]["recorded_total"]["p50"] == pytest.approx(TOTAL_MS)


@pytest.mark.timeout(60)
def test_eval_bag_rejects_a_bag_without_commands(policy, tmp_path):
    write_bag(tmp_path / "bag", frames(3), [], policy.action_space)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        eval_bag(tmp_path / "bag", policy)
    with pytest.raises(FileNotFoundError, match="not a rosbag2 folder"):
        eval_bag(tmp_path, policy)


def decoded(rgb, image_format):
    """What a camera frame looks like after the image_transport round trip."""
    if image_format is None:
        return rgb
    encoded = cv2.imencode(f".{image_format}", rgb[..., ::-1])[1]
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("image_format", ["jpeg", "png"])
def test_eval_bag_reads_compressed_frames_and_scores_terminate_as_a_decision(
        policy, tmp_path, image_format):
    space = policy.action_space
    used = [decoded(rgb, image_format) for rgb in frames(8, seed=5)[::2]]
    truth = np.stack([np.asarray(policy.act([rgb], [INSTRUCTION]).bins)[0] for rgb in used])
    recorded = truth.copy()
    recorded[:2, 11] = 255 - recorded[:2, 11]  # two flipped terminate decisions
    write_bag(tmp_path / "bag", frames(8, seed=5), recorded, space, image_format=image_format,
              instruction_topic="/voice/instruction")

    # the default raw topic is absent: its realsense-ros /compressed name is used
    report = eval_bag(tmp_path / "bag", policy, instruction_topic="/voice/instruction")
    assert report["samples"] == len(used)
    assert report["frames_matched_exactly"] == 1.0
    continuous = [n for i, n in enumerate(space.names) if i != 11]
    assert sorted(report["per_dimension"]) == sorted(continuous)  # no MAE for terminate
    assert all(d["token_accuracy"] == 1.0 for d in report["per_dimension"].values())
    pred_t, rec_t = truth[:, 11] >= 128, recorded[:, 11] >= 128
    tp = int(np.sum(pred_t & rec_t))
    assert report["terminate"] == {
        "precision": tp / pred_t.sum() if pred_t.sum() else None,
        "recall": tp / rec_t.sum() if rec_t.sum() else None, "true_positives": tp,
        "false_positives": int(np.sum(pred_t & ~rec_t)),
        "false_negatives": int(np.sum(~pred_t & rec_t))}
    with pytest.raises(ValueError, match="no camera frame on /cam or /cam/compressed"):
        eval_bag(tmp_path / "bag", policy, image_topic="/cam")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3],
                         ids=["mcap", "sqlite3"])
def test_truncated_bag_is_evaluated_up_to_its_last_intact_message(policy, tmp_path, storage):
    space = policy.action_space
    rgbs = frames(16, seed=7)
    truth = np.stack([np.asarray(policy.act([rgb], [INSTRUCTION]).bins)[0]
                      for rgb in rgbs[::2]])
    write_bag(tmp_path / "bag", rgbs, truth, space, storage=storage)
    file = next(f for f in (tmp_path / "bag").iterdir() if f.suffix in (".mcap", ".db3"))
    with file.open("r+b") as f:  # a killed recording: the tail never reached the disk
        f.truncate(file.stat().st_size * 6 // 10)

    with pytest.warns(TruncatedBagWarning, match="truncated or corrupt.*intact messages"):
        report = eval_bag(tmp_path / "bag", policy, plot=False)
    assert 2 <= report["samples"] < len(truth)
    assert report["token_accuracy"] == 1.0  # every salvaged frame is intact
    # only the last command may have lost its status (the cut), hence its exact frame
    assert report["frames_matched_exactly"] >= 1 - 1 / report["samples"]


@pytest.mark.timeout(60)
def test_eval_bag_cli_rejects_an_unreadable_bag_in_one_line_before_loading_a_model(
        tmp_path, capsys):
    from more_policy.nodes.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    bag = tmp_path / "garbage"
    bag.mkdir()
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: [not, a, bag\n")
    (bag / "garbage_0.mcap").write_bytes(b"\x00\x17" * 5000)
    for path in (bag, tmp_path / "missing"):
        # a checkpoint that cannot load: only checking the bag first gives the bag's error
        args = parser.parse_args(["eval-bag", str(path), "--checkpoint", str(tmp_path / "no")])
        assert args.func(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("more eval-bag: error: ") and str(path) in err, err
        assert "\n" not in err and "Traceback" not in err

    # a truncated bag warns in one line, then says why there is nothing to evaluate
    write_bag(tmp_path / "cut", frames(6), [], ActionSpace(), storage=StoragePlugin.SQLITE3)
    db3 = tmp_path / "cut" / "cut.db3"
    with db3.open("r+b") as f:
        f.truncate(db3.stat().st_size // 2)
    args = parser.parse_args(["eval-bag", str(tmp_path / "cut"), "--checkpoint", "none"])
    assert args.func(args) == 2
    warning, error = capsys.readouterr().err.strip().split("\n")
    assert warning.startswith(f"more eval-bag: warning: {db3}: truncated or corrupt")
    assert error.startswith("more eval-bag: error: ") and "nothing to evaluate" in error


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_stack_recording_replays_exactly_offline_and_over_dds(policy, tmp_path):
    import rclpy
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from more_msgs.msg import Go2Command
    from more_policy.nodes.bags import BagRecorder, replay_bag
    from more_policy.nodes.interfaces import COMMAND_QOS, INSTRUCTION_QOS, SENSOR_QOS
    from more_policy.nodes.messages import rgb_to_image

    space = policy.action_space
    rgbs = [rgb for rgb in frames(40, seed=3)  # frames on which the random policy keeps going
            if not space.is_terminate(policy.act([rgb], [INSTRUCTION]).values[0])][:8]
    assert len(rgbs) == 8
    with isolated_domain():
        node = NodeProcess("more_policy.nodes.policy_node",
                           {"checkpoint": "random-tiny", "max_rate_hz": 0.0,
                            "image_max_age_s": 2.0})
        rclpy.init()
        probe = recorder = None
        try:
            probe = Probe()
            commands = probe.listen(Go2Command, COMMAND_TOPIC, COMMAND_QOS)
            images = probe.publisher(Image, IMAGE_TOPIC, SENSOR_QOS)
            instructions = probe.publisher(String, INSTRUCTION_TOPIC, INSTRUCTION_QOS)
            assert node.wait_for_output("policy ready", timeout=90), node.output()
            recorder = BagRecorder(tmp_path / "recorded")
            probe._executor.add_node(recorder)
            # discovery: both directions matched before the first frame
            assert probe.wait_for(lambda: images.get_subscription_count() > 0
                                  and probe.node.count_publishers(COMMAND_TOPIC) > 0, 20)
            time.sleep(1.0)
            probe.publish_when_matched(instructions, String(data=INSTRUCTION))
            time.sleep(0.5)
            for k, rgb in enumerate(rgbs):  # lockstep: each frame gets its own command
                for _ in range(4):  # best-effort frames may drop on a loaded machine: resend
                    images.publish(rgb_to_image(rgb, probe.node.get_clock().now().to_msg()))
                    if probe.wait_for(lambda k=k: len(commands) > k, 3):
                        break
                assert len(commands) > k, node.output()
                time.sleep(0.2)
            time.sleep(0.5)
            probe._executor.remove_node(recorder)
            recorder.destroy_node()
            recorder = None
            recorded = read_bag(tmp_path / "recorded")
            n_commands = sum(m.topic == COMMAND_TOPIC for m in recorded)
            n_images = sum(m.topic == IMAGE_TOPIC for m in recorded)
            assert n_commands >= len(rgbs), node.output()

            report = eval_bag(tmp_path / "recorded", policy, tmp_path / "eval")
            assert report["samples"] == n_commands
            assert report["frames_matched_exactly"] == 1.0
            assert report["token_accuracy"] == 1.0 and report["action_accuracy"] == 1.0
            assert report["latency_ms"]["recorded_total"]["count"] == n_commands

            # Re-publish the recording's inputs into the running policy; record its answers.
            probe.close()
            probe = None
            counts = replay_bag(tmp_path / "recorded", record=tmp_path / "answers",
                                discovery_s=1.5, settle_s=1.5)
            assert counts[IMAGE_TOPIC] == n_images and counts[INSTRUCTION_TOPIC] == 1
            answers = read_bag(tmp_path / "answers")
            commands = [m.msg for m in answers if m.topic == COMMAND_TOPIC]
            assert len(commands) >= len(rgbs) // 2, node.output()  # recorded timing, any load
            # the replayed instruction is the running one: the episode continues
            assert {c.episode_id for c in commands} == {1}
            expected = {tuple(np.asarray(policy.act([rgb], [INSTRUCTION]).bins)[0])
                        for rgb in rgbs}
            assert all(tuple(c.action_bins) in expected for c in commands)
        finally:
            if recorder is not None:
                recorder.destroy_node()
            if probe is not None:
                probe.close()
            if rclpy.ok():
                rclpy.shutdown()
            node.stop()


@pytest.mark.ros
@pytest.mark.timeout(60)
def test_replay_makes_sim_time_stamps_live(tmp_path):
    """A sim-stack recording has header stamps on the simulated clock (seconds since the sim
    started) and log times on the recorder's wall clock: replayed, the frames must still read
    as live to a wall-clock stack (stamp ~ the time they arrive), one frame period apart."""
    import rclpy
    from sensor_msgs.msg import Image

    from more_policy.data.ros_messages import stamp_to_ns
    from more_policy.nodes.bags import replay_bag
    from more_policy.nodes.interfaces import SENSOR_QOS

    store = typestore()
    T = store.types
    wall_start, sim_start = time.time_ns() - 3600 * 10**9, 5 * 10**9  # recorded an hour ago
    with Writer(tmp_path / "sim", version=9) as writer:
        conn = writer.add_connection(IMAGE_TOPIC, "sensor_msgs/msg/Image", typestore=store)
        for k, rgb in enumerate(frames(5)):
            t = sim_start + k * FRAME_PERIOD_NS
            msg = T["sensor_msgs/msg/Image"](
                header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
                    sec=t // 10**9, nanosec=t % 10**9), frame_id="camera_color_optical_frame"),
                height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0,
                step=3 * rgb.shape[1], data=rgb.reshape(-1))
            writer.write(conn, wall_start + k * FRAME_PERIOD_NS + 3_000_000,
                         store.serialize_cdr(msg, msg.__msgtype__))
    with isolated_domain():
        rclpy.init()
        probe = Probe("replay_probe")
        arrivals = []
        probe.node.create_subscription(Image, IMAGE_TOPIC, lambda m: arrivals.append(
            (stamp_to_ns(m.header.stamp), probe.node.get_clock().now().nanoseconds)),
            SENSOR_QOS)
        try:
            counts = replay_bag(tmp_path / "sim", discovery_s=3.0, settle_s=0.5)
        finally:
            probe.close()
            rclpy.shutdown()
    assert counts[IMAGE_TOPIC] == 5 and len(arrivals) >= 3
    ages_s = [(received - stamp) / 1e9 for stamp, received in arrivals]
    assert all(-0.1 < age < 0.5 for age in ages_s), ages_s
    stamps = [stamp for stamp, _ in arrivals]
    assert all(d % FRAME_PERIOD_NS == 0 for d in np.diff(stamps)), "recorded spacing kept"
