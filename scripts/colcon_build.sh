#!/usr/bin/env bash
# Build ros2_ws (more_msgs, more_policy, more_bringup) with colcon run by the project venv's
# Python. colcon writes each executable's shebang from the Python that runs it, so
# install/more_policy/lib/more_policy/* start with the interpreter that has torch, numpy and
# rclpy, and `ros2 run` / `ros2 launch` work from any shell that sourced install/setup.bash.
# (A system `colcon build` would write #!/usr/bin/python3, which lacks the ML stack.)
#
#   scripts/colcon_build.sh                       # after scripts/setup.sh
#   scripts/colcon_build.sh --packages-select more_policy --build-base /tmp/b ...
#
# Extra arguments go to `colcon build`. With ROS_DISTRO set (a sourced ROS 2 Jazzy) the venv
# sees the system colcon and ROS; otherwise colcon and the ROS 2 wheels come from the venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-$VENV/bin/python}"
if [[ -z "${ROS_DISTRO:-}" ]]; then
  # pip-only machines: ament_cmake and the rosidl generators are wheels in the venv's prefix
  prefix="$("$PYTHON" -c 'import sys; print(sys.prefix)')"
  export AMENT_PREFIX_PATH="$prefix${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
fi
cd "$ROOT/ros2_ws"
exec "$PYTHON" -m colcon build "$@" --cmake-args -DBUILD_TESTING=OFF
