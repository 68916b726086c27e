"""The MoRE model: frozen VLM backbone + mixture of LoRA experts, read as a Q-function.

    from more_policy.model import MoREConfig, MoREPolicy
    policy = MoREPolicy.from_config(MoREConfig(backbone="tiny"))
    result = policy.act(images, ["go to the red ball"])
"""

from more_policy.model.config import (
    QUART_PROMPT_TEMPLATE,
    SHORT_PROMPT_TEMPLATE,
    MoREConfig,
    MoREConfigError,
)
from more_policy.model.policy import ActResult, MoREOutput, MoREPolicy

__all__ = ["QUART_PROMPT_TEMPLATE", "SHORT_PROMPT_TEMPLATE", "ActResult", "MoREConfig",
           "MoREConfigError", "MoREOutput", "MoREPolicy"]
