"""Convert rosbag2 recordings (``ros2 bag record``) into an episode dataset, without ROS.

Topics: the camera (sensor_msgs/Image or CompressedImage), /instruction (std_msgs/String) and
the commands (more_msgs/Go2Command). Each command becomes one step, paired with the newest
camera frame received at or before it. A new instruction starts a new episode; a command with
``terminate`` ends one. Read with ``rosbags`` (sqlite3 or mcap storage).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from more_policy.actions import ActionSpace
from more_policy.data.format import DatasetError
from more_policy.data.writer import EpisodeWriter
from more_policy.vision import to_model_frame

GO2_COMMAND = "more_msgs/msg/Go2Command"
DEFAULT_TOPICS = {"image": "/camera/camera/color/image_raw", "instruction": "/instruction",
                  "command": "/more/command"}


def go2_command_msg_text() -> str:
    """Go2Command.msg from an installed more_msgs (ament index) or this source tree."""
    candidates = [Path(p) / "share" / "more_msgs" / "msg" / "Go2Command.msg"
                  for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    candidates.append(Path(__file__).resolve().parents[3] / "more_msgs" / "msg" /
                      "Go2Command.msg")
    for path in candidates:
        if path.exists():
            return path.read_text()
    raise FileNotFoundError("Go2Command.msg not found (install more_msgs or run from the "
                            f"source tree); looked in {[str(c) for c in candidates]}")


def typestore_with_go2_command():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(get_types_from_msg(go2_command_msg_text(), GO2_COMMAND))
    return store


def image_to_rgb(msg, msgtype: str) -> np.ndarray:
    """sensor_msgs Image (rgb8/bgr8/mono8/rgba8/bgra8) or CompressedImage -> RGB uint8."""
    if msgtype.endswith("CompressedImage"):
        img = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"undecodable CompressedImage ({msg.format})")
        return img[:, :, ::-1]
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}.get(msg.encoding)
    if channels is None:
        raise DatasetError(f"unsupported image encoding {msg.encoding!r}")
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if data.size < msg.step * msg.height:
        raise DatasetError(f"image message truncated: {data.size} bytes for "
                           f"{msg.height}x{msg.width} {msg.encoding}")
    img = data[:msg.step * msg.height].reshape(msg.height, msg.step)[:, :msg.width * channels]
    img = img.reshape(msg.height, msg.width, channels)
    if msg.encoding == "mono8":
        return np.repeat(img, 3, axis=2)
    rgb = img[:, :, :3]
    return rgb[:, :, ::-1] if msg.encoding.startswith("bgr") else rgb


@dataclass
class _Episode:
    instruction: str
    frames: list[np.ndarray] = field(default_factory=list)
    commands: list[np.ndarray] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)
    terminated: bool = False


def read_episodes(bag: str | Path, space: ActionSpace, topics: dict[str, str] | None = None,
                  image_size: tuple[int, int] | None = None, max_frame_age_s: float = 1.0,
                  progress: bool = False) -> tuple[list[_Episode], dict[str, int]]:
    """Split a bag into episodes. Returns (episodes, counts of skipped commands by reason)."""
    from rosbags.highlevel import AnyReader, AnyReaderError

    topics = {**DEFAULT_TOPICS, **(topics or {})}
    bag = Path(bag)
    episodes: list[_Episode] = []
    skipped = {"no_instruction": 0, "no_frame": 0, "stale_frame": 0}
    current: _Episode | None = None
    frame_raw, frame_stamp, frame_type = None, None, None
    try:
        with AnyReader([bag], default_typestore=typestore_with_go2_command()) as reader:
            by_topic = {c.topic: c for c in reader.connections}
            missing = [t for t in topics.values() if t not in by_topic]
            if missing:
                raise DatasetError(f"{bag}: topics {missing} not recorded; the bag has "
                                   f"{sorted(by_topic)}")
            conns = [by_topic[t] for t in topics.values()]
            total = sum(c.msgcount for c in conns)
            for conn, stamp, raw in tqdm(reader.messages(connections=conns), total=total,
                                         desc="rosbag", disable=not progress):
                if conn.topic == topics["image"]:
                    frame_raw, frame_stamp, frame_type = raw, stamp, conn.msgtype
                    continue
                msg = reader.deserialize(raw, conn.msgtype)
                if conn.topic == topics["instruction"]:
                    current = _Episode(msg.data.strip())
                    episodes.append(current)
                    continue
                if current is None or current.terminated:
                    skipped["no_instruction"] += 1
                    continue
                if frame_raw is None:
                    skipped["no_frame"] += 1
                    continue
                if (stamp - frame_stamp) * 1e-9 > max_frame_age_s:
                    skipped["stale_frame"] += 1
                    continue
                frame = image_to_rgb(reader.deserialize(frame_raw, frame_type), frame_type)
                if image_size is not None:
                    frame = to_model_frame(frame, image_size)
                current.frames.append(np.ascontiguousarray(frame))
                current.commands.append(space.from_go2_command(msg))
                current.stamps.append(stamp)
                current.terminated = bool(msg.terminate)
    except DatasetError as e:
        if str(bag) in str(e):
            raise
        raise DatasetError(f"{bag}: {e}") from None
    except (AnyReaderError, ValueError, KeyError, OSError, IndexError) as e:
        raise DatasetError(f"{bag}: unreadable or corrupt rosbag2 recording: {e}") from e
    return [e for e in episodes if e.frames], skipped


def convert_rosbag(bags: list[str | Path], out_dir: str | Path, *,
                   action_space: ActionSpace | None = None, topics: dict[str, str] | None = None,
                   task: str = "robot", source: str = "expert", success: str = "terminated",
                   image_size: tuple[int, int] | None = (240, 240), rate_hz: float | None = None,
                   overwrite: bool = False, progress: bool = True) -> Path:
    """Convert bags into one dataset. ``success``: 'terminated' (the episode ended with the
    terminate dimension), 'all' or 'none'. Every bag is read before anything is written, so a
    corrupt bag leaves nothing behind."""
    if success not in ("terminated", "all", "none"):
        raise ValueError(f"success must be 'terminated', 'all' or 'none', got {success!r}")
    space = action_space or ActionSpace()
    episodes, skipped = [], {}
    for bag in bags:
        eps, skip = read_episodes(bag, space, topics, image_size, progress=progress)
        episodes += [(bag, e) for e in eps]
        skipped[str(bag)] = skip
    if not episodes:
        raise DatasetError(f"no episodes (instruction followed by commands) in {list(bags)}")
    if rate_hz is None:  # the command rate, from the recorded timestamps
        gaps = np.concatenate([np.diff(e.stamps) for _, e in episodes if len(e.stamps) > 1]
                              or [np.array([2e8])])
        rate_hz = round(1e9 / float(np.median(gaps)), 2)
    with EpisodeWriter(out_dir, space, rate_hz=rate_hz, overwrite=overwrite) as writer:
        for bag, e in episodes:
            ok = {"terminated": e.terminated, "all": True, "none": False}[success]
            writer.add_episode(np.stack(e.frames), np.stack(e.commands), e.instruction,
                               task=task, source=source, success=ok,
                               meta={"bag": str(bag), "start_ns": int(e.stamps[0]),
                                     "terminated": e.terminated, "skipped": skipped[str(bag)]})
    return Path(out_dir)
