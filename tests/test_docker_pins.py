"""Every version pinned in the requirements files a Docker image installs exists as a wheel
for that image's Python and CPU (pip's resolver with --python-version/--platform, --dry-run,
--no-deps, binaries only: nothing is built or installed). So a pin like numpy 2.4.6, which has
no Python 3.10 wheel, fails here instead of in a Jetson build. Needs PyPI (one pip call per
image, about a minute each on our machines)."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# What scripts/setup.sh installs in an image (the system ROS 2 replaces ros-jazzy.txt there).
COMMON = ("requirements/torch.txt", "requirements/unitree.txt", "requirements/colcon.txt")


@dataclass(frozen=True)
class Image:
    dockerfile: str
    base: str  # a string the FROM line's default base image contains
    python: str  # the base image's python3
    machine: str
    glibc: tuple[int, int]  # the base image's C library: manylinux_2_<minor> wheels and older
    lock: str  # MORE_LOCK: the pinned stack for this Python
    source: str | None = None  # pins the Dockerfile builds from source (no wheel exists)

    def requirements(self) -> tuple[str, ...]:
        return (self.lock, *COMMON)

    def platforms(self) -> list[str]:
        tags = [f"manylinux_2_{minor}_{self.machine}" for minor in range(5, self.glibc[1] + 1)]
        return tags + [f"manylinux2014_{self.machine}", f"manylinux2010_{self.machine}",
                       f"manylinux1_{self.machine}", f"linux_{self.machine}"]


IMAGES = (
    # Ubuntu 24.04 (noble): Python 3.12, glibc 2.39.
    Image("Dockerfile", "ubuntu24.04", "3.12", "x86_64", (2, 39), "requirements/lock.txt"),
    # JetPack 6 / L4T r36 is Ubuntu 22.04 (jammy): Python 3.10, glibc 2.35.
    Image("Dockerfile.jetson", "r36", "3.10", "aarch64", (2, 35),
          "requirements/lock-py310.txt", source="requirements/jetson-source.txt"),
)


def dry_run(image: Image, requirements: list[str], target: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
            "--no-deps", "--only-binary=:all:", "--python-version", image.python,
            "--implementation", "cp", "--target", str(target), "--quiet"]
    for platform in image.platforms():
        args += ["--platform", platform]
    return subprocess.run(args + requirements, capture_output=True, text=True, cwd=REPO,
                          timeout=900)


def pins(path: str) -> list[str]:
    lines = (REPO / path).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if "==" in line.split("#")[0]]


@pytest.mark.parametrize("image", IMAGES, ids=lambda i: i.dockerfile)
def test_dockerfile_installs_the_checked_python_and_lock(image):
    text = (REPO / "docker" / image.dockerfile).read_text()
    base = re.search(r"^ARG \w+_IMAGE=(\S+)", text, re.M)
    assert base and image.base in base.group(1), f"{image.dockerfile}: base image changed?"
    lock = re.search(r"MORE_LOCK=(\S+)", text)
    assert (lock.group(1) if lock else "requirements/lock.txt") == image.lock
    assert "scripts/setup.sh" in text
    if image.source:
        assert "--no-binary" in text and image.source in text
    for path in image.requirements():
        assert pins(path), f"{path} pins nothing"


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("image", IMAGES, ids=lambda i: i.dockerfile)
def test_every_pin_has_a_wheel_for_the_image(image, tmp_path):
    requirements = [arg for path in image.requirements() for arg in ("-r", path)]
    run = dry_run(image, requirements, tmp_path)
    errors = [line for line in run.stderr.splitlines() if line.startswith("ERROR")]
    assert run.returncode == 0, f"{image.dockerfile} (Python {image.python}, " \
        f"{image.machine}): " + "\n".join(errors or [run.stderr[-2000:]])


@pytest.mark.timeout(300)
@pytest.mark.parametrize("image", [i for i in IMAGES if i.source], ids=lambda i: i.dockerfile)
def test_source_built_pins_exist_as_sdists(image):
    for pin in pins(image.source):
        name, version = pin.split("==")
        run = subprocess.run([sys.executable, "-m", "pip", "index", "versions", name],
                             capture_output=True, text=True, timeout=240)
        assert run.returncode == 0, run.stderr[-1000:]
        available = re.search(r"Available versions: (.*)", run.stdout)
        assert available and version in available.group(1).split(", "), run.stdout


@pytest.mark.timeout(300)
def test_the_check_rejects_a_pin_without_a_wheel(tmp_path):
    # numpy 2.4 needs Python >= 3.11: what the Jetson image once pinned.
    jetson = next(i for i in IMAGES if i.python == "3.10")
    run = dry_run(jetson, ["numpy==2.4.6"], tmp_path)
    assert run.returncode != 0 and "numpy==2.4.6" in run.stderr
