"""The 12-d Go2 command space of MoRE: the single source of truth.

Every part of the stack (model decoding, datasets, converters, sim, controller, ROS nodes)
reads dimension names, units, ranges, bins and token ids from an :class:`ActionSpace`, and
the space is saved as JSON next to every checkpoint and dataset.

Discretisation: each dimension's [low, high] is split into ``num_bins`` (256) equal bins.
``encode`` maps a value to the bin containing it (values outside the range are clipped to
the first/last bin, documented behaviour; NaN/inf raise :class:`ActionSpaceError`), and
``decode`` returns the bin *centre*, so decode(encode(x)) is within half a bin of x. (QUART
encoded with *255 and decoded bin lower edges with /256, an off-by-one we do not repeat.)

Token ids: the model's vocabulary reserves ``num_bins`` consecutive action tokens starting at
``token_offset``; bin b is token ``token_offset + b`` for every dimension.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

ACTION_SPACE_FILE = "action_space.json"
NUM_DIMS = 12


class ActionSpaceError(ValueError):
    """Raised for values or configurations the command space cannot represent."""


@dataclass(frozen=True)
class ActionDim:
    """One command dimension: name (also the Go2Command field name), symbol, unit, range."""

    name: str
    symbol: str  # the paper's symbol
    unit: str
    low: float
    high: float
    description: str


# Paper order: [v_x, v_y, w_z, theta1, theta2, theta3, f, h_z, phi, s_y, h_z^f, T].
# Ranges: MORE_FACTS.md (QUARD observations), widened where the tasks need it: yaw made
# symmetric, lateral velocity +-0.5 (QUARD only shows ~-0.2), body height down to -0.10 so the
# Crawl task's crouch (0.08 m) is representable, pitch +-0.4 rad (walk-these-ways range).
DEFAULT_DIMS: tuple[ActionDim, ...] = (
    ActionDim("vel_x", "v_x", "m/s", 0.0, 2.1, "forward velocity in the body frame"),
    ActionDim("vel_y", "v_y", "m/s", -0.5, 0.5, "lateral velocity in the body frame (left +)"),
    ActionDim("yaw_rate", "w_z", "rad/s", -1.05, 1.05, "yaw rate (counter-clockwise +)"),
    ActionDim("gait_phase", "theta1", "1", 0.0, 1.0, "gait phase offset (0.5 = trot)"),
    ActionDim("gait_offset", "theta2", "1", 0.0, 1.0, "gait offset"),
    ActionDim("gait_bound", "theta3", "1", 0.0, 1.0, "gait bound"),
    ActionDim("step_frequency", "f", "Hz", 2.0, 4.0, "stepping frequency"),
    ActionDim("body_height", "h_z", "m", -0.10, 0.10, "body height offset from nominal"),
    ActionDim("body_pitch", "phi", "rad", -0.4, 0.4, "body pitch (nose down +)"),
    ActionDim("stance_width", "s_y", "m", 0.10, 0.30, "lateral distance between feet"),
    ActionDim("swing_height", "h_z^f", "m", 0.08, 0.18, "foot swing apex height"),
    ActionDim("terminate", "T", "1", 0.0, 1.0, "1 ends the episode"),
)
TERMINATE_INDEX = 11

# walk-these-ways' 15-slot command vector and the slot each of our dimensions fills. Its pitch
# is nose-up positive (corl_rewards._reward_orientation_control rotates the desired base by
# -pitch about y), ours nose-down positive: the sign flips at this boundary.
WTW_SLOTS: tuple[str, ...] = (
    "x_vel", "y_vel", "yaw_vel", "body_height", "step_frequency", "phase", "offset", "bound",
    "duration", "footswing_height", "pitch", "roll", "stance_width", "stance_length", "aux",
)
WTW_SLOT_OF_DIM: dict[str, str] = {
    "vel_x": "x_vel", "vel_y": "y_vel", "yaw_rate": "yaw_vel", "gait_phase": "phase",
    "gait_offset": "offset", "gait_bound": "bound", "step_frequency": "step_frequency",
    "body_height": "body_height", "body_pitch": "pitch", "stance_width": "stance_width",
    "swing_height": "footswing_height",
}
# Before the first action: stand still, trot at 3 Hz. duration is the stance fraction the
# walk-these-ways policy was trained with (0.5); QUART filled 0.2, outside its training data.
WTW_SIGN_FLIPPED_SLOTS = ("pitch",)
WTW_DEFAULTS: dict[str, float] = {
    "x_vel": 0.0, "y_vel": 0.0, "yaw_vel": 0.0, "body_height": 0.0, "step_frequency": 3.0,
    "phase": 0.5, "offset": 0.0, "bound": 0.0, "duration": 0.5, "footswing_height": 0.08,
    "pitch": 0.0, "roll": 0.0, "stance_width": 0.25, "stance_length": 0.45, "aux": 0.0,
}


@dataclass
class ActionSpace:
    """The 12 command dimensions, their 256-bin discretisation and their token ids."""

    dims: tuple[ActionDim, ...] = DEFAULT_DIMS
    num_bins: int = 256
    schema_version: int = 1
    wtw_defaults: dict[str, float] = field(default_factory=lambda: dict(WTW_DEFAULTS))

    def __post_init__(self) -> None:
        self.dims = tuple(d if isinstance(d, ActionDim) else ActionDim(**d) for d in self.dims)
        if len(self.dims) != NUM_DIMS:
            raise ActionSpaceError(f"expected {NUM_DIMS} dimensions, got {len(self.dims)}")
        if self.dims[TERMINATE_INDEX].name != "terminate":
            raise ActionSpaceError("the last dimension must be 'terminate'")
        if self.num_bins < 2:
            raise ActionSpaceError(f"num_bins must be >= 2, got {self.num_bins}")
        for d in self.dims:
            if not (math.isfinite(d.low) and math.isfinite(d.high) and d.low < d.high):
                raise ActionSpaceError(f"dimension {d.name!r}: need finite low < high, got "
                                       f"[{d.low}, {d.high}]")
        self._low = np.array([d.low for d in self.dims], dtype=np.float64)
        self._high = np.array([d.high for d in self.dims], dtype=np.float64)

    # -- introspection -------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dims)

    @property
    def low(self) -> np.ndarray:  # (12,)
        return self._low.copy()

    @property
    def high(self) -> np.ndarray:  # (12,)
        return self._high.copy()

    @property
    def bin_width(self) -> np.ndarray:  # (12,)
        return (self._high - self._low) / self.num_bins

    def __len__(self) -> int:
        return len(self.dims)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ActionSpaceError(f"unknown dimension {name!r}; known: {self.names}") from None

    def indices(self, *names: str) -> list[int]:
        """Positions of several dimensions, for indexing a command:
        ``cmd[space.indices("vel_x", "vel_y")]``."""
        return [self.index(name) for name in names]

    def with_ranges(self, ranges: dict[str, tuple[float, float]]) -> ActionSpace:
        """A copy with some dimensions' [low, high] overridden (e.g. ranges taken from data)."""
        unknown = set(ranges) - set(self.names)
        if unknown:
            raise ActionSpaceError(f"unknown dimensions {sorted(unknown)}; known: {self.names}")
        dims = tuple(replace(d, low=float(ranges[d.name][0]), high=float(ranges[d.name][1]))
                     if d.name in ranges else d for d in self.dims)
        return replace(self, dims=dims)

    # -- values <-> bins -----------------------------------------------------------------
    def _check_values(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.shape[-1:] != (NUM_DIMS,):
            raise ActionSpaceError(f"expected trailing dimension {NUM_DIMS}, got shape "
                                   f"{values.shape}")
        if not np.all(np.isfinite(values)):
            bad = [self.names[i] for i in np.unique(np.nonzero(~np.isfinite(values))[-1])]
            raise ActionSpaceError(f"non-finite command values (NaN/inf) in {bad}")
        return values

    def clip(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """Clip values (..., 12) into the ranges; NaN/inf raise."""
        return np.clip(self._check_values(values), self._low, self._high)

    def encode(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """Values (..., 12) in SI units -> bin indices (..., 12) int64 in [0, num_bins).

        Out-of-range values are clipped into the first/last bin; NaN/inf raise.
        """
        values = self._check_values(values)
        scaled = (values - self._low) / (self._high - self._low) * self.num_bins
        return np.clip(np.floor(scaled), 0, self.num_bins - 1).astype(np.int64)

    def decode(self, bins: Sequence[int] | np.ndarray) -> np.ndarray:
        """Bin indices (..., 12) -> bin-centre values (..., 12) float64."""
        bins = np.asarray(bins)
        if bins.shape[-1:] != (NUM_DIMS,):
            raise ActionSpaceError(f"expected trailing dimension {NUM_DIMS}, got {bins.shape}")
        if not np.issubdtype(bins.dtype, np.integer):
            raise ActionSpaceError(f"bins must be integers, got dtype {bins.dtype}")
        if bins.size and (bins.min() < 0 or bins.max() >= self.num_bins):
            raise ActionSpaceError(f"bins must lie in [0, {self.num_bins}), got "
                                   f"[{bins.min()}, {bins.max()}]")
        return self._low + (bins + 0.5) * self.bin_width

    # -- bins <-> vocabulary token ids ---------------------------------------------------
    def bins_to_token_ids(self, bins: np.ndarray, token_offset: int) -> np.ndarray:
        bins = np.asarray(bins, dtype=np.int64)
        if bins.size and (bins.min() < 0 or bins.max() >= self.num_bins):
            raise ActionSpaceError(f"bins must lie in [0, {self.num_bins})")
        return bins + int(token_offset)

    def token_ids_to_bins(self, token_ids: np.ndarray, token_offset: int) -> np.ndarray:
        bins = np.asarray(token_ids, dtype=np.int64) - int(token_offset)
        if bins.size and (bins.min() < 0 or bins.max() >= self.num_bins):
            raise ActionSpaceError(
                f"token ids outside the action tokens [{token_offset}, "
                f"{token_offset + self.num_bins}): got [{bins.min() + token_offset}, "
                f"{bins.max() + token_offset}]")
        return bins

    @staticmethod
    def is_terminate(values: np.ndarray) -> np.ndarray | bool:
        """The terminate dimension as a boolean (decoded value >= 0.5)."""
        return np.asarray(values)[..., TERMINATE_INDEX] >= 0.5

    def decision_bins(self) -> tuple[int, int]:
        """(continue, terminate): the terminate dimension's bins for the values 0 and 1."""
        low, high = self.encode(self.low), self.encode(self.high)
        return int(low[TERMINATE_INDEX]), int(high[TERMINATE_INDEX])

    def stop_bins(self) -> np.ndarray:
        """(num_bins,) bool: the terminate dimension's bins that decode to "terminate"."""
        bins = np.zeros((self.num_bins, NUM_DIMS), dtype=np.int64)
        bins[:, TERMINATE_INDEX] = np.arange(self.num_bins)
        return self.is_terminate(self.decode(bins))

    # -- walk-these-ways command ---------------------------------------------------------
    def to_wtw_command(self, values: Sequence[float] | np.ndarray | None) -> np.ndarray:
        """12-d command (clipped) -> walk-these-ways 15-slot vector in walk-these-ways'
        conventions; None gives the defaults."""
        slots = dict(self.wtw_defaults)
        if values is not None:
            values = self.clip(values)
            for i, name in enumerate(self.names):
                if name in WTW_SLOT_OF_DIM:
                    slot = WTW_SLOT_OF_DIM[name]
                    sign = -1.0 if slot in WTW_SIGN_FLIPPED_SLOTS else 1.0
                    slots[slot] = sign * float(values[i])
        return np.array([slots[s] for s in WTW_SLOTS], dtype=np.float64)

    def from_wtw_command(self, command: Sequence[float] | np.ndarray,
                         terminate: bool = False) -> np.ndarray:
        """walk-these-ways 15-slot vector -> 12-d command (slots we do not carry are dropped)."""
        command = np.asarray(command, dtype=np.float64)
        if command.shape != (len(WTW_SLOTS),):
            raise ActionSpaceError(f"expected {len(WTW_SLOTS)} slots, got {command.shape}")
        values = np.zeros(NUM_DIMS)
        for i, name in enumerate(self.names):
            if name in WTW_SLOT_OF_DIM:
                slot = WTW_SLOT_OF_DIM[name]
                sign = -1.0 if slot in WTW_SIGN_FLIPPED_SLOTS else 1.0
                values[i] = sign * command[WTW_SLOTS.index(slot)]
        values[TERMINATE_INDEX] = float(terminate)
        return values

    def default_command(self, **values: float) -> np.ndarray:
        """The 12-d command matching the walk-these-ways defaults (stand, trot, no terminate),
        with the named dimensions set, e.g. ``default_command(vel_x=0.5, yaw_rate=0.2)``."""
        command = self.from_wtw_command(self.to_wtw_command(None))
        for name, value in values.items():
            command[self.index(name)] = value
        return command

    # -- more_msgs/Go2Command (built in nodes/go2_command.py) ---------------------------
    def from_go2_command(self, msg) -> np.ndarray:
        """more_msgs/msg/Go2Command (rclpy or rosbags) -> 12-d command; NaN/inf fields raise.
        Reads the named fields only, so no ROS import is needed here."""
        values = [float(getattr(msg, n)) for n in self.names[:TERMINATE_INDEX]]
        values.append(1.0 if msg.terminate else 0.0)
        return self._check_values(np.array(values))

    # -- persistence ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "num_bins": self.num_bins,
                "dims": [asdict(d) for d in self.dims], "wtw_defaults": dict(self.wtw_defaults)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActionSpace:
        if data.get("schema_version", 1) != 1:
            raise ActionSpaceError(f"unsupported action-space schema {data['schema_version']}")
        try:
            return cls(dims=tuple(ActionDim(**d) for d in data["dims"]),
                       num_bins=int(data["num_bins"]),
                       wtw_defaults=dict(data.get("wtw_defaults", WTW_DEFAULTS)))
        except (KeyError, TypeError) as e:
            raise ActionSpaceError(f"malformed action space: {e}") from e

    def save(self, directory: str | Path) -> Path:
        """Write action_space.json into ``directory`` (a checkpoint or dataset)."""
        path = Path(directory) / ACTION_SPACE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ActionSpace:
        """Read a directory's action_space.json (or the file itself)."""
        path = Path(path)
        if path.is_dir():
            path = path / ACTION_SPACE_FILE
        if not path.exists():
            raise FileNotFoundError(f"no action space at {path} (expected {ACTION_SPACE_FILE})")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ActionSpaceError(f"{path}: not valid JSON: {e}") from e
        return cls.from_dict(data)
