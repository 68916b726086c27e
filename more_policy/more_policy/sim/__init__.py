"""MuJoCo Go2 simulation: the Go2 model, the six QUARD task scenes, command- and physics-mode
environments, a scripted expert and sub-optimal data generator, the closed-loop evaluator,
command tracking, and the Go2 on DDS (the bridge a controller drives as if it were the robot).

Rendering is headless: MUJOCO_GL defaults to egl (set before MuJoCo is first imported).
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
