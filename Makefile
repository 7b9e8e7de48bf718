# tinyvla_ros: one-command set-up, tests, demo and benchmarks.
# `make demo` and `make test` do all set-up themselves on a fresh machine.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# When a system ROS 2 is sourced (ROS_DISTRO set) its rclpy is reused and the PyPI
# ROS wheels are skipped.
ifdef ROS_DISTRO
  VENV_FLAGS := --system-site-packages
  ROS_REQ :=
else
  VENV_FLAGS :=
  ROS_REQ := requirements/ros.txt
endif
REQS := $(ROS_REQ) requirements/ml.txt requirements/sim.txt requirements/data.txt requirements/cameras.txt requirements/dev.txt
# The stamp's name carries a hash of the dependency files: set-up re-runs only when they change.
REQ_HASH := $(shell cat $(REQS) setup.py | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)$(if $(ROS_DISTRO),-$(ROS_DISTRO),)
export MUJOCO_GL ?= egl
PYTEST_ARGS ?=
DURATION ?= 60
ROBOT ?= franka

.PHONY: setup test lint pytest demo bench clean help system-deps

help:
	@echo "make demo   - set up, then run the Franka graph against the MuJoCo fake (DURATION=s, ROBOT=franka|ur5_bimanual)"
	@echo "make test   - set up, lint (ruff), run the test suite (pytest)"
	@echo "make bench  - run the CPU benchmark suite, rewrite benchmarks/RESULTS.md (QUICK=1 for a short run; ONLY='inference sim' for some)"
	@echo "make setup  - create $(VENV) and install pinned dependencies (idempotent)"

setup: $(STAMP)

$(STAMP): $(REQS) setup.py
	@$(MAKE) --no-print-directory system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	@rm -f $(VENV)/.installed-*
	$(PIP) install --disable-pip-version-check -q $(addprefix -r ,$(REQS))
	$(PIP) install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $@
	@echo "set-up done: $(VENV) ($$(du -sh $(VENV) | cut -f1))"

# Debian libraries some wheels need at run time (EGL/OSMesa for headless MuJoCo, libusb for
# pyrealsense2). Installed when we are root and they are missing; otherwise a message.
SYSTEM_PKGS := libegl1 libgl1 libosmesa6 libusb-1.0-0
system-deps:
	@missing=""; for p in $(SYSTEM_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "WARNING: apt-get install$$missing failed; headless rendering or RealSense may not work"; \
	  else \
	    echo "WARNING: missing Debian packages:$$missing (run: sudo apt-get install$$missing)"; \
	  fi; \
	fi

lint: setup
	$(VENV)/bin/ruff check tinyvla_ros test launch benchmarks setup.py
	$(VENV)/bin/ruff format --check tinyvla_ros test launch benchmarks setup.py

pytest: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test: setup
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory pytest

demo: setup
	$(PY) -m tinyvla_ros.demo --robot $(ROBOT) --duration $(DURATION) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT),)

bench: setup
	$(PY) benchmarks/run_all.py $(if $(QUICK),--quick,) $(if $(ONLY),--only $(ONLY),)

clean:
	rm -rf build install log .pytest_cache .ruff_cache
