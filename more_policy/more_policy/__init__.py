"""MoRE for the Unitree Go2: vision-language-action policy, offline RL, sim, ROS 2 nodes."""

__version__ = "0.1.0"
