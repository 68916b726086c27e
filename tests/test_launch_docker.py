"""Static checks of docker/ (no Docker engine on CI): what the images copy exists, the compose
file uses host networking, and every command launches an existing launch file with only the
arguments it declares."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from test_launch_files import launch_nodes

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.jetson"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_existing_paths(dockerfile):
    text = dockerfile.read_text()
    assert re.search(r"^FROM \$\{\w+\}$", text, re.M), "base image comes from a pinned ARG"
    sources = [src for line in re.findall(r"^COPY (.+)$", text, re.M)
               for src in line.split()[:-1]]
    assert sources
    for src in sources:
        assert (REPO / src).exists(), f"{dockerfile.name}: COPY {src} does not exist"
    # one Python environment: the venv's Python runs colcon (not the apt `colcon build`)
    assert "scripts/setup.sh" in text and "scripts/colcon_build.sh" in text
    assert not re.search(r"(RUN|&&)\s+colcon build", text), "colcon must run with the venv"
    assert (DOCKER / f"{dockerfile.name}.dockerignore").is_file()


def test_entrypoint_is_valid_bash():
    entrypoint = DOCKER / "entrypoint.sh"
    assert entrypoint.stat().st_mode & 0o111, "entrypoint.sh must be executable"
    subprocess.run(["bash", "-n", str(entrypoint)], check=True)


def test_compose_services_launch_existing_files_with_declared_arguments():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"go2", "sim"} <= set(services)
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        words = shlex.split(service["command"])
        if words[:2] != ["ros2", "launch"]:
            continue
        assert words[2] == "more_bringup", name
        launch_file = REPO / "more_bringup" / "launch" / words[3]
        assert launch_file.is_file(), f"{name}: no {words[3]}"
        _, declared, _ = launch_nodes(launch_file)
        arguments = {w.split(":=")[0] for w in words[4:]}
        assert arguments <= declared, f"{name}: undeclared launch arguments {arguments - declared}"
