"""The 12-d command -> more_msgs/msg/Go2Command (the message the policy node publishes).

The message type is ROS's, so building it lives in the nodes layer; reading one back is
ActionSpace.from_go2_command, which only reads the named fields and so also serves rosbags'
deserialized messages in data/rosbag.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from more_msgs.msg import Go2Command
from more_policy.actions import NUM_DIMS, TERMINATE_INDEX, ActionSpace


def to_go2_command(space: ActionSpace, values: np.ndarray, bins: np.ndarray | None = None,
                   token_offset: int | None = None, episode_id: int = 0, stamp: Any = None,
                   frame_id: str = "base_link") -> Go2Command:
    """Values clipped to ``space``; bins encoded from them unless given; token ids -1 when the
    policy's ``token_offset`` is unknown."""
    values = space.clip(values)
    if bins is None:
        bins = space.encode(values)
    msg = Go2Command()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    for i, name in enumerate(space.names[:TERMINATE_INDEX]):
        setattr(msg, name, float(values[i]))
    msg.terminate = bool(space.is_terminate(values))
    msg.action_bins = [int(b) for b in bins]
    msg.token_ids = ([int(t) for t in space.bins_to_token_ids(bins, token_offset)]
                     if token_offset is not None else [-1] * NUM_DIMS)
    msg.episode_id = int(episode_id)
    return msg
