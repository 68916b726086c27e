"""matplotlib for files, never a screen: every plot here is written headless (Agg)."""

from __future__ import annotations


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported on first use (it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
