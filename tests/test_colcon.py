"""ros2_ws builds with colcon run by the venv's Python (scripts/colcon_build.sh): the three
packages land in the ament index, the sourced overlay resolves them, and a node executable
from install/ starts with an interpreter that has the whole stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ros_procs import REPO, isolated_domain

pytestmark = [pytest.mark.ros, pytest.mark.slow]

PACKAGES = ("more_msgs", "more_policy", "more_bringup")


def overlay_command(install: Path, *args: str) -> list[str]:
    """``args`` run by bash after sourcing the overlay, as a user would."""
    return ["bash", "-c", f'source {install}/setup.bash && exec "$@"', "bash", *args]


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("colcon")
    env = dict(os.environ, PYTHON=sys.executable, COLCON_LOG_PATH=str(base / "log"))
    build = subprocess.run(
        [str(REPO / "scripts" / "colcon_build.sh"), "--build-base", str(base / "build"),
         "--install-base", str(base / "install")],
        capture_output=True, text=True, env=env, timeout=1200)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return base / "install"


@pytest.mark.timeout(1500)
def test_packages_land_in_the_ament_index(install):
    code = ("from ament_index_python.packages import get_package_prefix as p; "
            f"import more_policy; print(*[p(n) for n in {PACKAGES!r}], more_policy.__file__)")
    out = subprocess.run(overlay_command(install, sys.executable, "-c", code),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    prefixes = out.stdout.split()
    assert prefixes[:3] == [str(install / name) for name in PACKAGES]
    assert prefixes[3].startswith(str(install / "more_policy")), "imports the installed copy"
    launch = install / "more_bringup" / "share" / "more_bringup" / "launch"
    assert {p.name for p in launch.glob("*.launch.py")} == {"sim.launch.py", "go2.launch.py"}


@pytest.mark.timeout(300)
def test_installed_node_executable_runs_with_the_venv_python(install):
    exe = install / "more_policy" / "lib" / "more_policy" / "policy_node"
    shebang = exe.read_text().splitlines()[0]
    assert Path(shebang.removeprefix("#!")).resolve() == Path(sys.executable).resolve(), shebang
    with isolated_domain():
        proc = subprocess.Popen(
            overlay_command(install, str(exe), "--ros-args", "-p", "checkpoint:=random-tiny"),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            lines = []
            end = time.monotonic() + 180
            for line in proc.stdout:  # the node logs this once its model is loaded
                lines.append(line)
                if "policy ready" in line or time.monotonic() > end:
                    break
            assert any("policy ready" in line for line in lines), "".join(lines)
            os.killpg(proc.pid, signal.SIGINT)
            rest, _ = proc.communicate(timeout=10)
            assert proc.returncode == 0, "".join(lines) + rest
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
