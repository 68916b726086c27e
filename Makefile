# MoRE-Go2: every target sets itself up first (scripts/setup.sh is idempotent and fast when
# nothing changed).
SHELL := /bin/bash
VENV ?= .venv
RUN := source $(VENV)/bin/activate && export MUJOCO_GL=$${MUJOCO_GL:-egl} &&
PYTEST_ARGS ?=
# make bench BENCH="sim data": only bench_sim.py and bench_data.py
BENCH ?=

.PHONY: setup colcon demo test test-fast test-property lint bench clean

setup:
	@scripts/setup.sh

# ros2_ws with colcon run by the venv's Python (executables get that interpreter).
colcon: setup
	@scripts/colcon_build.sh

demo: setup
	@$(RUN) more demo

test: setup lint
	@$(RUN) python -m pytest -m "not property" $(PYTEST_ARGS)

test-fast: setup
	@$(RUN) python -m pytest -m "not ros and not sim and not slow and not property" $(PYTEST_ARGS)

test-property: setup
	@$(RUN) python -m pytest -m property $(PYTEST_ARGS)

lint: setup
	@$(RUN) ruff check .

bench: setup
	@$(RUN) python bench/run_all.py $(BENCH)

clean:
	rm -rf build ros2_ws/build ros2_ws/install ros2_ws/log outputs .pytest_cache
