"""more_bringup: launch files and parameter YAML for the MoRE-Go2 stacks.

``package_dir()`` finds the directory holding ``config/`` and ``launch/``: the ament share
directory on a colcon/ROS install, else this source checkout (pip-only machines).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_NAME = "more_bringup"


def package_dir() -> Path:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            return Path(get_package_share_directory(PACKAGE_NAME))
        except (PackageNotFoundError, OSError):  # not in the index / no AMENT_PREFIX_PATH
            pass
    except ImportError:
        pass
    return Path(__file__).resolve().parents[1]


def config_dir() -> Path:
    return package_dir() / "config"


def launch_dir() -> Path:
    return package_dir() / "launch"
