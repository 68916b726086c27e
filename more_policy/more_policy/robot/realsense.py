"""Intel RealSense D435 through pyrealsense2: a live camera or a recorded file, same frames.

    with RealSenseCamera(CameraConfig(depth=True)) as camera:       # live D435
        frame = camera.read()        # Frame(color (480, 640, 3) uint8 RGB, depth (480, 640))
    with RealSenseCamera(CameraConfig(playback_file="run.db3")) as camera:
        for frame in camera:          # every recorded frame, as fast as they can be read
            ...

With no device connected, :meth:`RealSenseCamera.start` raises :class:`CameraNotFoundError`
at once (the device list is queried first; nothing waits on a stream that will never come).
:func:`write_synthetic_recording` records frames through a ``software_device`` with the
library's own recorder (this pyrealsense2 writes rosbag2 ``.db3``): test data and demos.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class CameraNotFoundError(RuntimeError):
    """No RealSense device (or no recording) to read from."""


def _rs():
    try:
        import pyrealsense2 as rs
    except ImportError as e:
        raise ImportError(
            f"pyrealsense2 is not importable ({e}); `pip install pyrealsense2` and, on Debian/"
            "Ubuntu, `apt-get install -y libusb-1.0-0`") from e
    return rs


@dataclass
class CameraConfig:
    width: int = 640
    height: int = 480
    fps: int = 30
    depth: bool = False  # also stream depth (z16)
    align_depth: bool = True  # reproject depth into the colour camera
    serial: str | None = None  # pick one camera among several
    playback_file: str | None = None  # read this recording instead of a device
    timeout_ms: int = 2000


@dataclass
class Frame:
    color: np.ndarray  # (H, W, 3) uint8 RGB
    depth: np.ndarray | None  # (H, W) uint16 in depth units, or None
    depth_scale: float  # metres per depth unit
    timestamp_ms: float
    frame_number: int


class RealSenseCamera:
    def __init__(self, config: CameraConfig | None = None):
        self.config = config or CameraConfig()
        self._pipeline = None
        self._playback = None
        self._align = None
        self.depth_scale = 0.0

    def start(self) -> RealSenseCamera:
        rs, cfg = _rs(), self.config
        rs_config = rs.config()
        if cfg.playback_file is not None:
            path = Path(cfg.playback_file)
            if not path.is_file():
                raise CameraNotFoundError(f"no RealSense recording at {path}")
            rs_config.enable_device_from_file(str(path), repeat_playback=False)
        else:
            devices = rs.context().query_devices()
            serials = [d.get_info(rs.camera_info.serial_number) for d in devices]
            if not serials:
                raise CameraNotFoundError(
                    "no RealSense device connected (check the USB 3 cable, udev rules, and that "
                    "no other process holds the camera); use playback_file to read a recording")
            if cfg.serial is not None:
                if cfg.serial not in serials:
                    raise CameraNotFoundError(f"RealSense {cfg.serial} not found; connected: "
                                              f"{serials}")
                rs_config.enable_device(cfg.serial)
            rs_config.enable_stream(rs.stream.color, cfg.width, cfg.height, rs.format.rgb8,
                                    cfg.fps)
            if cfg.depth:
                rs_config.enable_stream(rs.stream.depth, cfg.width, cfg.height, rs.format.z16,
                                        cfg.fps)
        pipeline = rs.pipeline()
        if cfg.playback_file is not None:
            # Non-real-time before streaming starts, else the first frames can be dropped.
            resolved = rs_config.resolve(rs.pipeline_wrapper(pipeline))
            resolved.get_device().as_playback().set_real_time(False)
        profile = pipeline.start(rs_config)
        device = profile.get_device()
        if cfg.playback_file is not None:
            self._playback = device.as_playback()
            self._playback.set_real_time(False)  # every frame, none dropped
        depth_sensors = [s for s in device.query_sensors() if s.is_depth_sensor()]
        if depth_sensors:
            self.depth_scale = float(depth_sensors[0].as_depth_sensor().get_depth_scale())
        self._align = rs.align(rs.stream.color) if cfg.depth and cfg.align_depth else None
        self._pipeline = pipeline
        return self

    def read(self) -> Frame | None:
        """The next frame set; None at the end of a recording. A live camera that stops
        delivering raises RuntimeError after ``timeout_ms``."""
        if self._pipeline is None:
            raise RuntimeError("camera not started; call start() or use it as a context manager")
        if self._playback is None:
            ok, frames = self._pipeline.try_wait_for_frames(self.config.timeout_ms)
        else:  # poll briefly so the end of the file is noticed at once
            rs = _rs()
            for _ in range(max(1, self.config.timeout_ms // 20)):
                ok, frames = self._pipeline.try_wait_for_frames(20)
                if ok or self._playback.current_status() == rs.playback_status.stopped:
                    break
            if not ok:
                return None
        if not ok:
            raise RuntimeError(f"no frames from the RealSense for {self.config.timeout_ms} ms")
        if self._align is not None:
            frames = self._align.process(frames)
        color = frames.get_color_frame()
        if not color:
            raise RuntimeError("frame set without a colour frame (is the colour stream on?)")
        depth = frames.get_depth_frame() if self.config.depth else None
        return Frame(color=np.asanyarray(color.get_data()).copy(),
                     depth=np.asanyarray(depth.get_data()).copy() if depth else None,
                     depth_scale=self.depth_scale, timestamp_ms=float(color.get_timestamp()),
                     frame_number=int(color.get_frame_number()))

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame

    def stop(self) -> None:
        if self._pipeline is not None:
            self._pipeline.stop()
            self._pipeline = self._playback = None

    def __enter__(self) -> RealSenseCamera:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def write_synthetic_recording(path: str | Path, colors: Sequence[np.ndarray],
                              depths: Sequence[np.ndarray] | None = None, fps: int = 30,
                              depth_scale: float = 0.001, focal_px: float = 600.0) -> Path:
    """Record RGB (H, W, 3) uint8 frames (and z16 depth) from a pyrealsense2
    ``software_device`` into a RealSense recording that :class:`RealSenseCamera` plays back."""
    rs = _rs()
    path = Path(path)
    if path.suffix != ".db3":
        raise ValueError(f"this pyrealsense2 records rosbag2 .db3 files, got {path.name}")
    if depths is not None and len(depths) != len(colors):
        raise ValueError(f"{len(colors)} colour frames but {len(depths)} depth frames")
    height, width = colors[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)

    def stream(kind, uid, fmt, bpp):
        intr = rs.intrinsics()
        intr.width, intr.height, intr.fx, intr.fy = width, height, focal_px, focal_px
        intr.ppx, intr.ppy, intr.model, intr.coeffs = width / 2, height / 2, \
            rs.distortion.none, [0.0] * 5
        s = rs.video_stream()
        s.type, s.index, s.uid, s.width, s.height = kind, 0, uid, width, height
        s.fps, s.bpp, s.fmt, s.intrinsics = fps, bpp, fmt, intr
        return s

    device = rs.software_device()
    sensors = [(device.add_sensor("Color"), rs.stream.color, rs.format.rgb8, 3, colors)]
    if depths is not None:
        sensors.append((device.add_sensor("Depth"), rs.stream.depth, rs.format.z16, 2, depths))
    profiles = [s.add_video_stream(stream(kind, uid, fmt, bpp))
                for uid, (s, kind, fmt, bpp, _) in enumerate(sensors)]
    if depths is not None:
        sensors[1][0].add_read_only_option(rs.option.depth_units, depth_scale)
        identity = rs.extrinsics()
        identity.rotation, identity.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
        profiles[1].register_extrinsics_to(profiles[0], identity)
    recorder = rs.recorder(str(path), device)
    for (sensor, *_), profile in zip(sensors, profiles):
        sensor.open(profile)
        sensor.start(lambda frame: None)
    for k in range(len(colors)):
        for (sensor, _, _, bpp, images), profile in zip(sensors, profiles):
            image = np.ascontiguousarray(images[k])
            frame = rs.software_video_frame()
            frame.pixels, frame.stride, frame.bpp = image, width * bpp, bpp
            frame.timestamp, frame.frame_number = k * 1000.0 / fps, k
            frame.domain = rs.timestamp_domain.hardware_clock
            frame.profile = profile.as_video_stream_profile()
            sensor.on_video_frame(frame)
    for sensor, *_ in sensors:
        sensor.stop()
        sensor.close()
    del recorder  # the recording is finalised when the recorder goes away
    return path
