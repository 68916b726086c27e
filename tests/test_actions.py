"""The command space: binning, token ids, persistence, walk-these-ways slots, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from more_policy.actions import (
    DEFAULT_DIMS,
    WTW_DEFAULTS,
    WTW_SLOTS,
    ActionSpace,
    ActionSpaceError,
)

SPACE = ActionSpace()


def in_range_commands():
    """Hypothesis strategy: a (12,) command with every value inside its dimension's range."""
    return st.tuples(*[st.floats(d.low, d.high, allow_nan=False) for d in DEFAULT_DIMS]).map(
        np.array)


@settings(max_examples=300, deadline=None)
@given(in_range_commands())
def test_decode_encode_within_half_a_bin(values):
    decoded = SPACE.decode(SPACE.encode(values))
    assert np.all(np.abs(decoded - values) <= SPACE.bin_width / 2 + 1e-9)


@settings(max_examples=200, deadline=None)
@given(in_range_commands(), in_range_commands())
def test_encode_is_monotone(a, b):
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    assert np.all(SPACE.encode(lo) <= SPACE.encode(hi))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 255), min_size=12, max_size=12), st.integers(0, 300_000))
def test_token_ids_round_trip(bins, offset):
    bins = np.array(bins)
    ids = SPACE.bins_to_token_ids(bins, offset)
    assert np.all(ids >= offset) and np.all(ids < offset + 256)
    np.testing.assert_array_equal(SPACE.token_ids_to_bins(ids, offset), bins)


def test_bins_cover_range_without_off_by_one():
    # Lowest value -> bin 0, highest -> bin 255, centres strictly inside the range.
    np.testing.assert_array_equal(SPACE.encode(SPACE.low), np.zeros(12))
    np.testing.assert_array_equal(SPACE.encode(SPACE.high), np.full(12, 255))
    centres = SPACE.decode(np.full(12, 255))
    np.testing.assert_allclose(centres, SPACE.high - SPACE.bin_width / 2)
    np.testing.assert_allclose(SPACE.decode(np.zeros(12, dtype=int)),
                               SPACE.low + SPACE.bin_width / 2)


def test_out_of_range_values_are_clipped_to_the_edge_bins():
    values = SPACE.high + 10.0
    np.testing.assert_array_equal(SPACE.encode(values), np.full(12, 255))
    np.testing.assert_array_equal(SPACE.clip(SPACE.low - 1.0), SPACE.low)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_raise_a_clear_error(bad):
    values = SPACE.default_command()
    values[2] = bad
    with pytest.raises(ActionSpaceError, match="yaw_rate"):
        SPACE.encode(values)


def test_bad_shapes_bins_and_token_ids_raise():
    with pytest.raises(ActionSpaceError, match="trailing dimension 12"):
        SPACE.encode(np.zeros(11))
    with pytest.raises(ActionSpaceError, match=r"\[0, 256\)"):
        SPACE.decode(np.full(12, 256))
    with pytest.raises(ActionSpaceError, match="integers"):
        SPACE.decode(np.zeros(12))
    with pytest.raises(ActionSpaceError, match="outside the action tokens"):
        SPACE.token_ids_to_bins(np.full(12, 5), token_offset=10)


def test_default_command_with_named_overrides():
    cmd = SPACE.default_command(vel_x=0.5, body_height=-0.08)
    assert cmd[0] == 0.5 and cmd[SPACE.index("body_height")] == -0.08
    rest = [i for i in range(12) if i not in (0, SPACE.index("body_height"))]
    np.testing.assert_array_equal(cmd[rest], SPACE.default_command()[rest])
    with pytest.raises(ActionSpaceError, match="unknown dimension 'speed'"):
        SPACE.default_command(speed=1.0)


def test_paper_order_and_terminate():
    assert [d.symbol for d in SPACE.dims] == [
        "v_x", "v_y", "w_z", "theta1", "theta2", "theta3", "f", "h_z", "phi", "s_y", "h_z^f",
        "T"]
    stop = SPACE.default_command()
    assert not SPACE.is_terminate(stop)
    stop[11] = 1.0
    assert SPACE.is_terminate(SPACE.decode(SPACE.encode(stop)))


def test_decision_bins_decode_to_continue_and_terminate():
    go, stop = SPACE.decision_bins()
    bins = SPACE.encode(SPACE.default_command())
    assert bins[-1] == go
    bins[-1] = stop
    assert SPACE.is_terminate(SPACE.decode(bins)) and go != stop
    stops = SPACE.stop_bins()
    assert stops.shape == (SPACE.num_bins,) and not stops[go] and stops[stop]
    assert stops.sum() == SPACE.num_bins // 2 and stops[SPACE.num_bins // 2:].all()


def test_indices_name_command_positions():
    cmd = SPACE.default_command()
    cmd[SPACE.indices("vel_x", "body_pitch", "terminate")] = [0.5, 0.1, 1.0]
    assert cmd[0] == 0.5 and cmd[8] == pytest.approx(0.1) and SPACE.is_terminate(cmd)
    with pytest.raises(ActionSpaceError, match="unknown dimension 'speed'"):
        SPACE.indices("vel_x", "speed")


def test_json_round_trip_keeps_overridden_ranges(tmp_path):
    space = SPACE.with_ranges({"vel_x": (0.0, 1.0), "step_frequency": (1.5, 3.5)})
    space.save(tmp_path)
    loaded = ActionSpace.load(tmp_path)
    assert loaded == space
    assert loaded.dims[0].high == 1.0
    values = np.clip(np.linspace(loaded.low, loaded.high, 7), loaded.low, loaded.high)
    np.testing.assert_array_equal(loaded.encode(values), space.encode(values))


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="action_space.json"):
        ActionSpace.load(tmp_path)
    (tmp_path / "action_space.json").write_text("{not json")
    with pytest.raises(ActionSpaceError, match="not valid JSON"):
        ActionSpace.load(tmp_path)
    with pytest.raises(ActionSpaceError, match="unknown dimensions"):
        SPACE.with_ranges({"speed": (0, 1)})
    with pytest.raises(ActionSpaceError, match="low < high"):
        SPACE.with_ranges({"vel_x": (1.0, 1.0)})


def test_walk_these_ways_command_slots_and_defaults():
    default = SPACE.to_wtw_command(None)
    assert default.shape == (15,)
    assert dict(zip(WTW_SLOTS, default, strict=True)) == WTW_DEFAULTS
    values = SPACE.decode(SPACE.encode(np.linspace(SPACE.low, SPACE.high, 3)[1]))
    wtw = SPACE.to_wtw_command(values)
    assert wtw[WTW_SLOTS.index("x_vel")] == pytest.approx(values[0])
    assert wtw[WTW_SLOTS.index("footswing_height")] == pytest.approx(values[10])
    assert wtw[WTW_SLOTS.index("roll")] == 0.0
    assert wtw[WTW_SLOTS.index("duration")] == WTW_DEFAULTS["duration"]
    np.testing.assert_allclose(SPACE.from_wtw_command(wtw), np.r_[values[:11], 0.0])
