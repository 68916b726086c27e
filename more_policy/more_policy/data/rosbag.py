"""rosbag2 recordings (``ros2 bag record``, sqlite3 or mcap) without ROS, through ``rosbags``:
the typestore (ROS 2 Jazzy plus more_msgs), reading a bag's messages, and converting a bag into
an episode dataset.

Conversion topics: the camera (sensor_msgs/Image or CompressedImage), /instruction
(std_msgs/String) and the commands (more_msgs/Go2Command). Each command becomes one step,
paired with the newest camera frame received at or before it. A new instruction starts a new
episode; a command with ``terminate`` ends one.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from more_policy.actions import ActionSpace
from more_policy.data.format import DatasetError
from more_policy.data.ros_messages import (
    COMMAND_TOPIC,
    IMAGE_TOPIC,
    INSTRUCTION_TOPIC,
    ImageError,
    image_to_rgb,
)
from more_policy.data.writer import EpisodeWriter
from more_policy.vision import to_model_frame

MORE_MSG_TYPES = ("Go2Command", "PolicyStatus")
DEFAULT_TOPICS = {"image": IMAGE_TOPIC, "instruction": INSTRUCTION_TOPIC,
                  "command": COMMAND_TOPIC}


def more_msgs_dir() -> Path:
    """The directory holding more_msgs' .msg files: an ament install (AMENT_PREFIX_PATH), this
    environment's prefix (where scripts/setup.sh installs it), then the source tree."""
    prefixes = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    candidates = [p / "share" / "more_msgs" / "msg" for p in [*prefixes, Path(sys.prefix)]]
    candidates.append(Path(__file__).resolve().parents[3] / "more_msgs" / "msg")
    for path in candidates:
        if all((path / f"{name}.msg").is_file() for name in MORE_MSG_TYPES):
            return path
    raise FileNotFoundError("more_msgs .msg files not found (install more_msgs or run from the "
                            f"source tree); looked in {[str(c) for c in candidates]}")


def typestore():
    """A rosbags typestore for ROS 2 Jazzy plus more_msgs."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    msg_dir = more_msgs_dir()
    types = {}
    for name in MORE_MSG_TYPES:
        types.update(get_types_from_msg((msg_dir / f"{name}.msg").read_text(),
                                        f"more_msgs/msg/{name}"))
    store.register(types)
    return store


@dataclass
class BagMessage:
    topic: str
    log_ns: int  # when the recorder received it
    msg: object  # rosbags dataclass


class TruncatedBagWarning(UserWarning):
    """A bag's storage file ends early (a killed recording); only its intact messages are read."""


STORAGE_SUFFIXES = (".mcap", ".db3")


def read_bag(path: str | Path, topics: tuple[str, ...] | None = None) -> list[BagMessage]:
    """Every message of ``topics`` (all if None) in log-time order, deserialised. A truncated
    or corrupt .mcap/.db3 (or a missing metadata.yaml) is read up to its last intact message
    with a :class:`TruncatedBagWarning`; a bag with nothing readable raises
    :class:`DatasetError`."""
    from rosbags.rosbag2 import Reader, ReaderError

    path = Path(path)
    files = sorted(f for f in path.glob("*") if f.suffix in STORAGE_SUFFIXES) \
        if path.is_dir() else []
    if not (path / "metadata.yaml").is_file() and not files:
        raise FileNotFoundError(f"{path} is not a rosbag2 folder (no metadata.yaml)")
    store = typestore()
    try:
        with Reader(path) as reader:
            connections = [c for c in reader.connections if topics is None or c.topic in topics]
            records = [(c.topic, c.msgtype, log_ns, raw)
                       for c, log_ns, raw in reader.messages(connections=connections)]
    except ReaderError as e:
        records = _salvage(path, files, topics, " ".join(str(e).split()))
    try:
        return [BagMessage(topic, log_ns, store.deserialize_cdr(raw, msgtype))
                for topic, msgtype, log_ns, raw in records]
    except Exception as e:  # rosbags raises assorted errors for a mangled CDR payload
        raise DatasetError(f"{path}: corrupt message in the rosbag2 recording: {e}") from None


def _salvage(path: Path, files: list[Path], topics: tuple[str, ...] | None,
             reason: str) -> list[tuple[str, str, int, bytes]]:
    """(topic, msgtype, log_ns, raw) of every intact message in ``files``, log-time order."""
    if not files:
        raise DatasetError(f"{path}: unreadable rosbag2 recording ({reason})")
    records = []
    for file in files:
        scan = _scan_mcap if file.suffix == ".mcap" else _scan_sqlite3
        found, complete = scan(file)
        last = f"the last at log time {max(r[2] for r in found)} ns" if found else "none"
        state = "truncated or corrupt" if not complete else "read without its index"
        warnings.warn(f"{file}: {state} ({reason}); read its {len(found)} intact messages "
                      f"({last})", TruncatedBagWarning, stacklevel=3)
        records += [r for r in found if topics is None or r[0] in topics]
    return sorted(records, key=lambda r: r[2])


MCAP_MAGIC = b"\x89MCAP0\r\n"


def _scan_mcap(file: Path) -> tuple[list[tuple[str, str, int, bytes]], bool]:
    """Read an MCAP file front to back, without its summary (which a killed recording never
    wrote). Returns (intact messages, whether the file ended cleanly)."""
    data = memoryview(file.read_bytes())
    if bytes(data[:8]) != MCAP_MAGIC:
        raise DatasetError(f"{file}: not an MCAP file (bad magic)")
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}
    messages: list[tuple[int, int, bytes]] = []
    complete = _mcap_records(data, 8, schemas, channels, messages)
    return [(*channels[c], log_ns, raw) for c, log_ns, raw in messages if c in channels], complete


def _mcap_records(buf: memoryview, pos: int, schemas: dict, channels: dict,
                  messages: list) -> bool:
    """Parse MCAP records from ``pos``; False if ``buf`` ends inside one (or a chunk is bad).
    Layouts: https://mcap.dev/spec (opcode u8, length u64, then the record's fields)."""
    from rosbags.rosbag2 import ReaderError
    from rosbags.rosbag2.storage_mcap import decompress

    def u(at: int, size: int) -> int:
        return int.from_bytes(buf[at:at + size], "little")

    def string(at: int) -> tuple[str, int]:
        size = u(at, 4)
        return bytes(buf[at + 4:at + 4 + size]).decode(), at + 4 + size

    while pos < len(buf):
        if pos + 9 > len(buf):
            return False
        op, start, end = buf[pos], pos + 9, pos + 9 + u(pos + 1, 8)
        if op == 0x0F:  # DataEnd: the summary follows
            return True
        if op == 0x06 and len(buf) - start >= 32:  # Chunk
            compression, at = string(start + 28)
            records = buf[at + 8:min(at + 8 + u(at, 8), len(buf))]
            if end > len(buf) and compression:
                return False  # a cut compressed chunk cannot be decoded
            if compression:
                try:
                    records = memoryview(decompress(bytes(records), compression,
                                                    u(start + 16, 8), u(start + 24, 4)))
                except ReaderError:
                    return False
            if not _mcap_records(records, 0, schemas, channels, messages) or end > len(buf):
                return False
        elif end > len(buf):
            return False
        elif op == 0x03:  # Schema: id u16, name
            schemas[u(start, 2)] = string(start + 2)[0]
        elif op == 0x04:  # Channel: id u16, schema id u16, topic
            channels[u(start, 2)] = (string(start + 4)[0], schemas.get(u(start + 2, 2), ""))
        elif op == 0x05:  # Message: channel u16, sequence u32, log time u64, publish u64, data
            messages.append((u(start, 2), u(start + 6, 8), bytes(buf[start + 22:end])))
        pos = end
    return True


def _scan_sqlite3(file: Path) -> tuple[list[tuple[str, str, int, bytes]], bool]:
    """Read the rows of a truncated rosbag2 sqlite3 file: a copy padded with empty pages to its
    recorded size opens, and the message table is read in insertion order up to the first
    missing page. Returns (intact messages, whether every row was read)."""
    data = file.read_bytes()
    if not data.startswith(b"SQLite format 3\x00"):
        raise DatasetError(f"{file}: not an SQLite database (bad header)")
    page = int.from_bytes(data[16:18], "big")
    page = 65536 if page == 1 else page
    pages = max(int.from_bytes(data[28:32], "big"), -(-len(data) // page))
    messages, complete = [], True
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / file.name
        copy.write_bytes(data + bytes(page * pages - len(data)))
        conn = sqlite3.connect(f"file:{copy}?immutable=1", uri=True)
        try:
            topics = {i: (name, msgtype) for i, name, msgtype in
                      conn.execute("SELECT id, name, type FROM topics")}
            try:
                for topic_id, log_ns, raw in conn.execute(
                        "SELECT topic_id, timestamp, data FROM messages ORDER BY id"):
                    if topic_id in topics:
                        messages.append((*topics[topic_id], log_ns, bytes(raw)))
            except sqlite3.DatabaseError:
                complete = False
        except sqlite3.DatabaseError as e:
            raise DatasetError(f"{file}: unreadable rosbag2 sqlite3 file ({e})") from None
        finally:
            conn.close()
    return messages, complete


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
        with AnyReader([bag], default_typestore=typestore()) as reader:
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
                try:
                    frame = image_to_rgb(reader.deserialize(frame_raw, frame_type))
                except ImageError as e:
                    raise DatasetError(f"{bag}: {e}") from None
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
