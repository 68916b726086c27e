"""more_msgs/Go2Command built by the nodes layer and read back by the action space."""

import numpy as np
import pytest

from more_policy.actions import ActionSpace, ActionSpaceError
from more_policy.nodes.go2_command import to_go2_command

SPACE = ActionSpace()


def test_go2_command_message_round_trip():
    values = SPACE.decode(np.arange(12) * 20)
    values[11] = 1.0
    bins = SPACE.encode(values)
    msg = to_go2_command(SPACE, values, bins, token_offset=1000, episode_id=7)
    assert msg.terminate and msg.episode_id == 7
    assert list(msg.token_ids) == list(bins + 1000)
    np.testing.assert_allclose(SPACE.from_go2_command(msg)[:11], values[:11], rtol=1e-6)
    msg.vel_x = float("nan")
    with pytest.raises(ActionSpaceError, match="vel_x"):
        SPACE.from_go2_command(msg)


def test_values_are_clipped_and_unknown_tokens_are_minus_one():
    values = SPACE.default_command(vel_x=100.0)
    msg = to_go2_command(SPACE, values)
    assert msg.vel_x == pytest.approx(SPACE.high[SPACE.index("vel_x")])
    assert list(msg.token_ids) == [-1] * 12
    assert list(msg.action_bins) == list(SPACE.encode(SPACE.clip(values)))
