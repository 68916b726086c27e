#!/usr/bin/env bash
# Regenerate requirements/ros-jazzy.txt and requirements/lock.txt from the current .venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/.venv/bin/activate"
ROS_PATTERN='^(ros-|catkin-pkg|empy|lark-parser)'
frozen=$(pip freeze --exclude-editable | grep -v -i -E '^(torch|unitree-sdk2)==')
{ echo "# ROS 2 Jazzy Python runtime + message-build tooling from PyPI (skipped when ROS_DISTRO is set)."
  grep -i -E "$ROS_PATTERN" <<<"$frozen"; } > "$ROOT/requirements/ros-jazzy.txt"
{ echo "# Everything else, pinned to what was tested (pip freeze). Regenerate: scripts/lock.sh"
  grep -v -i -E "$ROS_PATTERN" <<<"$frozen"; } > "$ROOT/requirements/lock.txt"
echo "wrote requirements/ros-jazzy.txt and requirements/lock.txt"
