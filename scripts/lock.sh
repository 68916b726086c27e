#!/usr/bin/env bash
# Regenerate requirements/ros-jazzy.txt and requirements/lock.txt from the current .venv.
# Only distributions pip installed are pinned: the ROS wheels also unpack egg-info metadata for
# their own contents (std_msgs, rclpy, ...), and our editable packages and more_msgs are built here.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/.venv/bin/python" - "$ROOT/requirements" <<'PY'
import importlib.metadata as md
import json
import re
import sys
from pathlib import Path

out = Path(sys.argv[1])
ros_pattern = re.compile(r"^(ros-|catkin-pkg|empy|lark-parser)", re.I)
# requirements/torch.txt, unitree.txt, colcon.txt (installed --no-deps)
separate = {"torch", "unitree-sdk2"} | {
    re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
    for line in (out / "colcon.txt").read_text().splitlines() if "==" in line}
pins = {}
for dist in md.distributions():
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
    direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
    if (dist.read_text("INSTALLER") or "").strip() != "pip" or name in separate \
            or direct_url.get("dir_info", {}).get("editable"):
        continue
    pins[name] = f"{name}=={dist.version.split('+')[0]}"
ros = sorted(v for k, v in pins.items() if ros_pattern.match(k))
rest = sorted(v for k, v in pins.items() if not ros_pattern.match(k))
(out / "ros-jazzy.txt").write_text(
    "# ROS 2 Jazzy Python runtime + message-build tooling from PyPI (skipped when ROS_DISTRO "
    "is set).\n" + "\n".join(ros) + "\n")
(out / "lock.txt").write_text(
    "# Everything else, pinned to what was tested. Regenerate: scripts/lock.sh\n"
    + "\n".join(rest) + "\n")
print(f"pinned {len(ros)} ROS and {len(rest)} other distributions")
PY
