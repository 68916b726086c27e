"""A tabular autoregressive Q-model: one row of A logits per (state, action prefix).

Small enough to converge exactly, so the objective's known-answer tests (and fast trainer
tests) run the same loss and training-step code as the MoRE policy. Frames encode the state
as a flat grey level (state k -> pixel value ``k * grey_step``), which survives JPEG.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from more_policy.rl.objective import QOutput


class TabularQModel(nn.Module):
    def __init__(self, num_states: int, num_dims: int, num_bins: int, grey_step: int = 20,
                 init_logit: float = 0.0) -> None:
        super().__init__()
        self.num_states, self.num_dims, self.num_bins = num_states, num_dims, num_bins
        self.grey_step = grey_step
        # Dimension i has num_states * A^i prefixes; rows for all dims stacked in one table.
        sizes = [num_states * num_bins ** i for i in range(num_dims)]
        self.register_buffer("row_offset", torch.tensor(np.cumsum([0] + sizes[:-1])),
                             persistent=False)
        self.table = nn.Parameter(torch.full((sum(sizes), num_bins), float(init_logit)))

    def frame(self, state: int, size: int = 8) -> np.ndarray:
        """The (size, size, 3) uint8 frame that encodes ``state``."""
        return np.full((size, size, 3), state * self.grey_step, dtype=np.uint8)

    def make_state(self, images: list[np.ndarray], instructions: list[str]) -> Tensor:
        del instructions  # the tabular MDP has a single task
        grey = np.array([float(img.mean()) for img in images])
        return torch.from_numpy(np.rint(grey / self.grey_step).astype(np.int64)) \
            .clamp(0, self.num_states - 1)

    def rows(self, state: Tensor, action_bins: Tensor | None) -> Tensor:
        """Table row of every (sample, dimension): (B, D)."""
        b = state.shape[0]
        if action_bins is None:
            action_bins = torch.zeros(b, self.num_dims, dtype=torch.long)
        prefix = torch.zeros(b, dtype=torch.long)
        rows = []
        for i in range(self.num_dims):
            rows.append(self.row_offset[i] + state * self.num_bins ** i + prefix)
            prefix = prefix * self.num_bins + action_bins[:, i].long()
        return torch.stack(rows, dim=1)

    def forward(self, state: Tensor, action_bins: Tensor | None = None) -> QOutput:
        return QOutput(action_logits=self.table[self.rows(state, action_bins)])  # (B, D, A)

    @torch.no_grad()
    def q_values(self, state: int, prefix: tuple[int, ...]) -> Tensor:
        """Q(state, prefix, .) for the next dimension: (A,)."""
        bins = torch.zeros(1, self.num_dims, dtype=torch.long)
        bins[0, :len(prefix)] = torch.tensor(prefix, dtype=torch.long)
        row = self.rows(torch.tensor([state]), bins)[0, len(prefix)]
        return torch.sigmoid(self.table[row])

    @torch.no_grad()
    def greedy(self, state: int) -> tuple[int, ...]:
        prefix: tuple[int, ...] = ()
        for _ in range(self.num_dims):
            prefix += (int(self.q_values(state, prefix).argmax()),)
        return prefix
