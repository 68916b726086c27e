"""The environment for a Python child process of a test: this checkout's more_policy first on
PYTHONPATH (so the child imports the code under test, whatever is installed)."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "more_policy"),
                                                      env.get("PYTHONPATH")]))
    return env


@contextmanager
def stopped_after(loop, client, peer: subprocess.Popen):
    """Whatever happens inside: stop the control loop, close its DDS client and kill the peer
    process if it still runs (so a failed test leaves no process on the DDS domain)."""
    try:
        yield
    finally:
        loop.stop()
        client.close()
        if peer.poll() is None:
            peer.kill()
