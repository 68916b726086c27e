"""`python -m more_policy.train` / `accelerate launch -m more_policy.train`: the trainer's
launch entry (the trainer itself is the more_policy.training package)."""

import sys

from more_policy.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
