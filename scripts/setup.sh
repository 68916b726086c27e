#!/usr/bin/env bash
# One-command setup from a fresh clone: .venv, pinned Python packages, apt packages, more_msgs
# (and tf2_msgs where no ROS 2 is installed).
#
#   scripts/setup.sh            # idempotent; a second run with nothing changed takes seconds
#   FORCE=1 scripts/setup.sh    # redo every step
#
# With ROS_DISTRO set (a sourced ROS 2 Jazzy install) the system ROS 2 is used and the ROS
# wheels from PyPI are skipped; the venv then sees the system packages.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
STAMPS="$VENV/.more-stamps"
REQ="$ROOT/requirements"
# The pinned stack; the Jetson image (Python 3.10) sets MORE_LOCK=requirements/lock-py310.txt.
LOCK="${MORE_LOCK:-$REQ/lock.txt}"
[[ "$LOCK" = /* ]] || LOCK="$ROOT/$LOCK"
APT_PACKAGES=(libusb-1.0-0 libegl1 libegl-mesa0 libgl1-mesa-dri cmake g++)

# pip warns once per package about the image's empty local index folders; hide only that.
pip_quiet() { pip "$@" 2> >(grep -v '^WARNING: Location' >&2); }
log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# A step re-runs only when the hash of its inputs changed since it last succeeded.
inputs_hash() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }
up_to_date() { [[ -z "${FORCE:-}" && -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
mark_done() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }

# --- apt -------------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]]; then
    log "apt-get install ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    log "missing system packages; run: sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
fi

# --- venv ------------------------------------------------------------------------------
if [[ -n "${ROS_DISTRO:-}" ]]; then
  log "using the system ROS 2 $ROS_DISTRO"
  [[ -d "$VENV" ]] || "$PYTHON" -m venv --system-site-packages "$VENV"
  ros_reqs=()
else
  [[ -d "$VENV" ]] || "$PYTHON" -m venv "$VENV"
  ros_reqs=("$REQ/ros-jazzy.txt")
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, pinned: anything that pulls an unpinned torch would download GBs of CUDA.
h=$(inputs_hash "$REQ/torch.txt" "${ros_reqs[@]}" "$LOCK" "$REQ/unitree.txt" "$REQ/colcon.txt")
if ! up_to_date pip "$h"; then
  log "pip: torch (CPU build), then the pinned stack (requirements/)"
  pip_quiet install -q -r "$REQ/torch.txt"
  req_args=(-r "$LOCK")
  for r in "${ros_reqs[@]}"; do req_args+=(-r "$r"); done
  pip_quiet install -q -c "$REQ/torch.txt" "${req_args[@]}"
  # unitree-sdk2 pins cyclonedds 0.10.2, which has no wheel for this Python: install it without
  # deps on top of cyclonedds 11 (ENVIRONMENT.md; its import defects are handled in
  # more_policy/robot/sdk_compat.py).
  pip_quiet install -q --no-deps -r "$REQ/unitree.txt"
  # colcon, run by this venv's Python (scripts/colcon_build.sh); why --no-deps: colcon.txt.
  pip_quiet install -q --no-deps -r "$REQ/colcon.txt"
  python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" \
    || { log "torch was replaced by pip; refusing to continue"; exit 1; }
  mark_done pip "$h"
fi

# --- interface packages (rosidl, plain cmake into the venv) ---------------------------------
# build_interfaces NAME SOURCE_DIR: generate and install a message package into the venv.
build_interfaces() {
  local name="$1" src="$2" build="$ROOT/build/$1"
  log "building $name"
  rm -rf "$build" && mkdir -p "$build"
  cmake -S "$src" -B "$build" -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF >"$build.log" 2>&1 \
    && cmake --build "$build" -j"$(nproc)" >>"$build.log" 2>&1 \
    && cmake --install "$build" >>"$build.log" 2>&1 \
    || { tail -n 40 "$build.log"; log "$name build failed (full log: $build.log)"; exit 1; }
}
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
cmake_helpers=("$ROOT"/more_msgs/cmake/*.cmake)
# tf2_msgs (/tf, /tf_static) is part of every ROS 2 install but has no PyPI wheel: pip-only
# machines build the vendored TFMessage (ros2_ws/vendor/tf2_msgs).
if [[ -z "${ROS_DISTRO:-}" ]]; then
  tf2="$ROOT/ros2_ws/vendor/tf2_msgs"
  h=$(inputs_hash "$tf2"/CMakeLists.txt "$tf2"/package.xml "$tf2"/msg/*.msg "${cmake_helpers[@]}")
  if ! up_to_date tf2_msgs "$h" || ! python -c "import tf2_msgs.msg" 2>/dev/null; then
    build_interfaces tf2_msgs "$tf2"
    mark_done tf2_msgs "$h"
  fi
fi
h=$(inputs_hash "$ROOT"/more_msgs/CMakeLists.txt "$ROOT"/more_msgs/package.xml "$ROOT"/more_msgs/msg/*.msg "${cmake_helpers[@]}")
if ! up_to_date more_msgs "$h" || ! python -c "import more_msgs.msg" 2>/dev/null; then
  build_interfaces more_msgs "$ROOT/more_msgs"
  mark_done more_msgs "$h"
fi

# --- our packages, editable ----------------------------------------------------------------
h=$(inputs_hash "$ROOT/more_policy/setup.py" "$ROOT/more_bringup/setup.py")
if ! up_to_date editable "$h"; then
  log "installing more_policy and more_bringup (editable)"
  # compat mode: a path entry, so the source-tree folder more_policy/ (no __init__) never
  # shadows the package as a namespace when Python runs from the repository root.
  pip_quiet install -q --no-deps --no-build-isolation --config-settings editable_mode=compat -e "$ROOT/more_policy" -e "$ROOT/more_bringup"
  mark_done editable "$h"
fi

python - <<'PY'
from more_msgs.msg import Go2Command, PolicyStatus  # noqa: F401
from tf2_msgs.msg import TFMessage  # noqa: F401
import more_policy, rclpy, torch  # noqa: F401,E401
print(f"[setup] ready: torch {torch.__version__}, rclpy, more_msgs, more_policy {more_policy.__version__}")
PY
