"""rosbag2 recordings -> episode dataset: real bags written with `rosbags`, no ROS runtime."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from more_policy.actions import ActionSpace
from more_policy.data import DatasetError, EpisodeDataset
from more_policy.data.ros_messages import ImageError, image_to_rgb
from more_policy.data.rosbag import MORE_MSG_TYPES, convert_rosbag, more_msgs_dir, typestore
from more_policy.data.validate import validate_dataset

SPACE = ActionSpace()
GO2_COMMAND = "more_msgs/msg/Go2Command"


def make_msgs(store):
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    Image = store.types["sensor_msgs/msg/Image"]
    Compressed = store.types["sensor_msgs/msg/CompressedImage"]
    String = store.types["std_msgs/msg/String"]
    Cmd = store.types[GO2_COMMAND]

    def header(ns):
        return Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="camera")

    def image(ns, grey, compressed=False):
        data = np.full((12, 16, 3), grey, np.uint8)
        data[..., 2] = 0  # bgr8: the blue channel is zero, so a channel swap would show
        if compressed:  # JPEG of the same BGR frame, as image_transport publishes it
            jpeg = cv2.imencode(".jpg", data, [cv2.IMWRITE_JPEG_QUALITY, 100])[1]
            return Compressed(header=header(ns), format="bgr8; jpeg compressed bgr8",
                              data=jpeg.reshape(-1))
        return Image(header=header(ns), height=12, width=16, encoding="bgr8", is_bigendian=0,
                     step=48, data=data.reshape(-1))

    def command(ns, vx, terminate):
        values = SPACE.default_command()
        values[0], values[11] = vx, float(terminate)
        bins = SPACE.encode(values).astype(np.uint8)
        fields = {n: float(values[i]) for i, n in enumerate(SPACE.names[:11])}
        return Cmd(header=header(ns), **fields, terminate=bool(terminate), action_bins=bins,
                   token_ids=np.full(12, -1, np.int32), episode_id=0)

    return image, String, command


def write_bag(path, storage=StoragePlugin.MCAP, compressed=False):
    store = typestore()
    make_image, String, command = make_msgs(store)

    def image(ns, grey):
        return make_image(ns, grey, compressed)

    with Writer(path, version=9, storage_plugin=storage) as w:
        cam = w.add_connection("/camera/camera/color/image_raw",
                               "sensor_msgs/msg/" + ("CompressedImage" if compressed else "Image"),
                               typestore=store)
        ins = w.add_connection("/instruction", "std_msgs/msg/String", typestore=store)
        cmd = w.add_connection("/more/command", GO2_COMMAND, typestore=store)

        def put(conn, ns, msg):
            w.write(conn, ns, store.serialize_cdr(msg, conn.msgtype))

        t = 10**9
        put(cmd, t, command(t, 0.1, False))  # before any instruction: skipped
        put(ins, t + 1, String(data="go to the red ball"))
        for k in range(4):  # episode 1: 4 steps at 5 Hz, ends with terminate
            ns = t + (k + 1) * 200_000_000
            put(cam, ns - 50_000_000, image(ns, 40 + k))
            put(cam, ns - 10_000_000, image(ns, 100 + 10 * k))  # newest frame wins
            put(cmd, ns, command(ns, 0.5 + 0.1 * k, terminate=k == 3))
        t2 = t + 2 * 10**9
        put(ins, t2, String(data="crawl under the gate"))
        for k in range(3):  # episode 2: cut off by the end of the recording
            ns = t2 + (k + 1) * 200_000_000
            put(cam, ns - 10_000_000, image(ns, 200 + k))
            put(cmd, ns, command(ns, 1.0, terminate=False))
    return path


@pytest.mark.parametrize("storage, compressed", [(StoragePlugin.MCAP, False),
                                                 (StoragePlugin.SQLITE3, False),
                                                 (StoragePlugin.MCAP, True)],
                         ids=["mcap", "sqlite3", "mcap-compressed"])
def test_bag_becomes_episodes(tmp_path, storage, compressed):
    bag = write_bag(tmp_path / "bag", storage, compressed)
    out = convert_rosbag([bag], tmp_path / "out", image_size=None, task="field",
                         progress=False)
    ds = EpisodeDataset(out, shuffle=False)
    assert ds.meta["rate_hz"] == 5.0 and ds.meta["num_episodes"] == 2
    eps = ds.episodes_table().to_pydict()
    assert eps["instruction"] == ["go to the red ball", "crawl under the gate"]
    assert eps["num_steps"] == [4, 3] and eps["success"] == [True, False]
    samples = list(ds)
    first = [s for s in samples if s["episode_index"] == 0]
    np.testing.assert_allclose([s["command"][0] for s in first], [0.5, 0.6, 0.7, 0.8],
                               rtol=1e-6)
    assert [s["command"][11] for s in first] == [0, 0, 0, 1]
    img = first[1]["image"]
    assert img.shape == (12, 16, 3)
    assert abs(int(img[..., 0].mean()) - 0) <= 2       # red channel came from bgr's last
    assert abs(int(img[..., 2].mean()) - 110) <= 2     # the newest frame (grey 110) was used
    assert first[-1]["reward"] == 1.0
    assert validate_dataset(out) == []


def test_corrupt_bag_names_the_file_and_writes_nothing(tmp_path):
    bag = write_bag(tmp_path / "bag")
    mcap = next(bag.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    with pytest.raises(DatasetError, match="bag: unreadable or corrupt"):
        convert_rosbag([bag], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(DatasetError, match="/nope"):
        convert_rosbag([write_bag(tmp_path / "bag2")], tmp_path / "out",
                       topics={"command": "/nope"}, progress=False)


def test_image_to_rgb_reads_every_encoding_and_rejects_bad_images():
    store = typestore()
    header = store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id="camera")

    def image(encoding, step, data):
        return store.types["sensor_msgs/msg/Image"](header=header, height=4, width=5,
                                                     encoding=encoding, is_bigendian=0,
                                                     step=step, data=data.reshape(-1))

    def compressed(fmt, data):
        return store.types["sensor_msgs/msg/CompressedImage"](header=header, format=fmt,
                                                              data=data.reshape(-1))

    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    padded = np.zeros((4, 20), np.uint8)  # step 20 > 5 x 3: row padding is skipped
    padded[:, :15] = rgb[:, :, ::-1].reshape(4, 15)
    np.testing.assert_array_equal(image_to_rgb(image("bgr8", 20, padded)), rgb)
    rgba = np.concatenate([rgb, np.full((4, 5, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(image_to_rgb(image("rgba8", 20, rgba)), rgb)
    grey = image_to_rgb(image("mono8", 5, rgb[..., 0]))
    np.testing.assert_array_equal(grey, np.repeat(rgb[..., :1], 3, axis=2))
    png = cv2.imencode(".png", rgb[:, :, ::-1])[1]
    np.testing.assert_array_equal(image_to_rgb(compressed("png", png)), rgb)
    bad = {"unsupported image encoding": image("16UC1", 10, np.zeros(40, np.uint8)),
           "expected step": image("rgb8", 15, np.zeros(59, np.uint8)),
           "undecodable": compressed("jpeg", np.zeros(8, np.uint8))}
    for message, msg in bad.items():
        with pytest.raises(ImageError, match=message):
            image_to_rgb(msg)


def test_more_msgs_found_on_the_ament_prefix_path_first(tmp_path, monkeypatch):
    share = tmp_path / "share" / "more_msgs" / "msg"
    share.mkdir(parents=True)
    for name in MORE_MSG_TYPES:
        (share / f"{name}.msg").write_text((more_msgs_dir() / f"{name}.msg").read_text())
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    assert more_msgs_dir() == share
    assert GO2_COMMAND in typestore().types
