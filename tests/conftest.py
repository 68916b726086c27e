"""Shared fixtures: DDS isolation for ROS tests, headless rendering, small thread counts."""

from __future__ import annotations

import os
import random

import pytest

# Headless MuJoCo rendering and a 2-core machine shared by test processes.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def ros_domain(monkeypatch) -> int:
    """A random ROS_DOMAIN_ID with localhost-only discovery, inherited by subprocesses.

    Domain ids 100-230 keep clear of the default 0 and of the Unitree SDK tests' ids.
    """
    domain = random.randint(100, 230)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return domain
