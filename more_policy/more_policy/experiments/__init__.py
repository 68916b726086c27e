"""End-to-end experiments: reproduce a small MoRE from a seed, and the paper's ablation.

    more reproduce --preset small --out outputs/more-small      # data -> train -> evaluate
    more ablation --preset small --seeds 0,1,2 --out outputs/ablation
"""

from more_policy.experiments.config import DataConfig, ExperimentConfig
from more_policy.experiments.small import PRESETS, preset

__all__ = ["DataConfig", "ExperimentConfig", "PRESETS", "preset"]
