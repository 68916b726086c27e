#!/usr/bin/env bash
# Source ROS 2, the project venv and the colcon overlay, then run the command.
set -e
for setup in /opt/ros/jazzy/setup.bash /opt/ros/jazzy/install/setup.bash; do
  if [[ -f $setup ]]; then
    # shellcheck disable=SC1090
    source "$setup"
    break
  fi
done
# shellcheck disable=SC1091
source /opt/more/.venv/bin/activate
# shellcheck disable=SC1091
source /opt/more/ros2_ws/install/setup.bash
exec "$@"
