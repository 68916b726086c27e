"""Offline RL for MoRE: Bellman targets, conservative/balance losses, EMA target, IL baseline."""

from more_policy.rl.losses import bellman_targets, imitation_loss, q_learning_loss
from more_policy.rl.objective import Objective, QOutput, RLConfig, TargetNetwork

__all__ = ["Objective", "QOutput", "RLConfig", "TargetNetwork", "bellman_targets",
           "imitation_loss", "q_learning_loss"]
