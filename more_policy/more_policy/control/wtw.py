"""walk-these-ways runner: a Go1-trained TorchScript gait policy driving the Go2 at 50 Hz.

A walk-these-ways checkpoint holds two TorchScript networks: the adaptation module
(history 2100 -> latent 2) and the body ([history, latent] 2102 -> 12 actions). Each tick:

    obs (70) = [projected gravity (3), 15-slot command * scales (15), q - default (12),
                dq * 0.05 (12), actions (12), previous actions (12), foot clocks (4)]
    history (30 x 70, newest last) <- obs
    actions = clip(body([history, adaptation(history)]))
    joint targets = default + 0.25 * actions (hips x 0.5), PD with kp 20, kd 0.5

Every command first passes the command envelope
(:class:`~more_policy.control.envelope.CommandEnvelope`), the same one the analytic controller
applies; the walk-these-ways slots follow its conventions (pitch nose-up +, see actions.py).

Joints inside the policy are in its training order (Go1 / Isaac Gym: FL, FR, RL, RR); the
SDK order (FR, FL, RR, RL) is mapped at the boundary by ``policy_to_sdk``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from more_policy.actions import WTW_SLOTS, ActionSpace
from more_policy.control.envelope import CommandEnvelope, EnvelopeConfig
from more_policy.control.gait_clock import GaitClock
from more_policy.robot.go2 import NUM_MOTORS, MotorCommand, RobotState

CONFIG_FILE = "wtw_config.json"
NUM_OBS = 70


@dataclass
class WtwConfig:
    adaptation_file: str = "adaptation_module_latest.jit"
    body_file: str = "body_latest.jit"
    history_len: int = 30
    latent_dim: int = 2
    command_scales: tuple[float, ...] = (2, 2, 0.25, 2, 1, 1, 1, 1, 1, 0.15, 0.3, 0.3, 1, 1, 1)
    dof_pos_scale: float = 1.0
    dof_vel_scale: float = 0.05
    action_scale: float = 0.25
    hip_scale_reduction: float = 0.5
    clip_actions: float = 10.0
    kp: float = 20.0
    kd: float = 0.5
    control_dt: float = 0.02
    warp_clock_by_duration: bool = True
    # Default pose in policy order (Go1 walk-these-ways: FL, FR, RL, RR).
    default_joint_pos: tuple[float, ...] = (0.1, 0.8, -1.5, -0.1, 0.8, -1.5,
                                            0.1, 1.0, -1.5, -0.1, 1.0, -1.5)
    # policy joint i is SDK motor policy_to_sdk[i].
    policy_to_sdk: tuple[int, ...] = (3, 4, 5, 0, 1, 2, 9, 10, 11, 6, 7, 8)
    hip_joints: tuple[int, ...] = field(default=(0, 3, 6, 9))  # policy order

    def __post_init__(self) -> None:
        if len(self.command_scales) != len(WTW_SLOTS):
            raise ValueError(f"command_scales needs {len(WTW_SLOTS)} values")
        if len(self.default_joint_pos) != NUM_MOTORS:
            raise ValueError(f"default_joint_pos needs {NUM_MOTORS} values")
        if sorted(self.policy_to_sdk) != list(range(NUM_MOTORS)):
            raise ValueError(f"policy_to_sdk must be a permutation of 0..11, got "
                             f"{self.policy_to_sdk}")

    @classmethod
    def load(cls, path: str | Path) -> WtwConfig:
        data = json.loads(Path(path).read_text())
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown walk-these-ways settings {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONFIG_FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        return path


def projected_gravity(quat: np.ndarray) -> np.ndarray:
    """(3,) unit gravity in the body frame from a wxyz body->world quaternion."""
    w, x, y, z = np.asarray(quat, dtype=np.float64) / np.linalg.norm(quat)
    # third row of R (body->world), negated: R^T @ [0, 0, -1]
    return -np.array([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)])


class WalkTheseWaysRunner:
    """LowLevelController running a walk-these-ways checkpoint."""

    def __init__(self, adaptation: torch.jit.ScriptModule, body: torch.jit.ScriptModule,
                 config: WtwConfig | None = None, action_space: ActionSpace | None = None,
                 envelope: EnvelopeConfig | None = None):
        self.config = cfg = config or WtwConfig()
        self.space = action_space or ActionSpace()
        self.control_dt = cfg.control_dt
        self.envelope = CommandEnvelope(envelope, self.space, self.control_dt)
        self.adaptation, self.body = adaptation.eval(), body.eval()
        self.clock = GaitClock()
        self._sdk_of_policy = np.array(cfg.policy_to_sdk)
        self._default = np.array(cfg.default_joint_pos)  # (12,) policy order
        self._scale = np.full(NUM_MOTORS, cfg.action_scale)
        self._scale[list(cfg.hip_joints)] *= cfg.hip_scale_reduction
        self._command_scales = np.array(cfg.command_scales)
        self._check_networks()
        self.reset(RobotState())

    @classmethod
    def from_checkpoint(cls, directory: str | Path, config: WtwConfig | None = None,
                        action_space: ActionSpace | None = None,
                        envelope: EnvelopeConfig | None = None) -> WalkTheseWaysRunner:
        """Load ``adaptation_module_latest.jit`` and ``body_latest.jit`` (and, if present,
        ``wtw_config.json``) from a walk-these-ways checkpoint directory."""
        directory = Path(directory)
        if config is None:
            config = (WtwConfig.load(directory / CONFIG_FILE)
                      if (directory / CONFIG_FILE).exists() else WtwConfig())
        nets = []
        for name in (config.adaptation_file, config.body_file):
            path = directory / name
            if not path.exists():
                raise FileNotFoundError(f"walk-these-ways checkpoint {directory} has no {name}")
            with warnings.catch_warnings():  # checkpoints are TorchScript by definition
                warnings.simplefilter("ignore", DeprecationWarning)
                nets.append(torch.jit.load(str(path), map_location="cpu"))
        return cls(nets[0], nets[1], config, action_space, envelope)

    def _check_networks(self) -> None:
        cfg = self.config
        history = torch.zeros(1, NUM_OBS * cfg.history_len)
        with torch.inference_mode():
            latent = self.adaptation(history)
            if tuple(latent.shape) != (1, cfg.latent_dim):
                raise ValueError(f"adaptation module maps {NUM_OBS * cfg.history_len} -> "
                                 f"{tuple(latent.shape)[1:]}, expected ({cfg.latent_dim},)")
            actions = self.body(torch.cat([history, latent], dim=-1))
            if tuple(actions.shape) != (1, NUM_MOTORS):
                raise ValueError(f"body maps {history.shape[1] + cfg.latent_dim} -> "
                                 f"{tuple(actions.shape)[1:]}, expected ({NUM_MOTORS},)")

    def reset(self, state: RobotState) -> None:
        self.clock.reset()
        self.envelope.reset()
        self.history = np.zeros((self.config.history_len, NUM_OBS), dtype=np.float32)
        self.actions = np.zeros(NUM_MOTORS, dtype=np.float32)  # policy order
        self.last_actions = np.zeros(NUM_MOTORS, dtype=np.float32)
        self.last_observation = np.zeros(NUM_OBS, dtype=np.float32)

    def observation(self, state: RobotState, wtw_command: np.ndarray) -> np.ndarray:
        """The (70,) observation for this tick (the clock must already be advanced)."""
        cfg = self.config
        q = np.asarray(state.q)[self._sdk_of_policy]
        dq = np.asarray(state.dq)[self._sdk_of_policy]
        slot = {name: float(wtw_command[i]) for i, name in enumerate(WTW_SLOTS)}
        clock = self.clock.clock_inputs(slot["phase"], slot["offset"], slot["bound"],
                                        slot["duration"], warp=cfg.warp_clock_by_duration)
        return np.concatenate([
            projected_gravity(state.quat),  # (3,)
            wtw_command * self._command_scales,  # (15,)
            (q - self._default) * cfg.dof_pos_scale,  # (12,)
            dq * cfg.dof_vel_scale,  # (12,)
            self.actions,  # (12,)
            self.last_actions,  # (12,)
            clock,  # (4,)
        ]).astype(np.float32)

    def step(self, state: RobotState, command: np.ndarray) -> MotorCommand:
        cfg = self.config
        wtw_command = self.space.to_wtw_command(self.envelope.apply(command))  # (15,)
        self.clock.advance(cfg.control_dt, wtw_command[WTW_SLOTS.index("step_frequency")])
        obs = self.observation(state, wtw_command)
        self.history = np.roll(self.history, -1, axis=0)
        self.history[-1] = obs
        self.last_observation = obs
        with torch.inference_mode():
            flat = torch.from_numpy(self.history.reshape(1, -1))  # (1, 2100)
            latent = self.adaptation(flat)  # (1, 2)
            actions = self.body(torch.cat([flat, latent], dim=-1))[0].numpy()  # (12,)
        self.last_actions = self.actions
        self.actions = np.clip(actions, -cfg.clip_actions, cfg.clip_actions).astype(np.float32)
        targets = np.empty(NUM_MOTORS)
        targets[self._sdk_of_policy] = self._default + self._scale * self.actions
        return MotorCommand(q=targets, kp=np.full(NUM_MOTORS, cfg.kp),
                            kd=np.full(NUM_MOTORS, cfg.kd))
