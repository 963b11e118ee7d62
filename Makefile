# ScintiSeg — `make run` starts Orthanc with the plugin; `make test` passes every test.
# Both set up what they need on a fresh Debian 12 or Debian 13 machine (run as root, or with sudo).

SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
# The Orthanc Python plugin embeds Debian's interpreter (python3.11 on Debian 12, python3.13 on
# Debian 13, detected by scripts/orthanc-env.sh): the venv is made from it, and made again when
# it is another one.
SYSTEM_PYTHON := $(shell ./scripts/orthanc-env.sh ORTHANC_PLUGIN_PYTHON)
PYTHON_NAME := $(notdir $(SYSTEM_PYTHON))
APT_PACKAGES := orthanc orthanc-python orthanc-dicomweb dcmtk dicom3tools python3-venv
# A cluster of nodes (SCINTISEG_POSTGRESQL, docs/cluster.md) and its tests: the PostgreSQL
# index plugin, and the PostgreSQL server that the tests start on a folder of their own.
APT_PACKAGES += orthanc-postgresql postgresql

.PHONY: setup apt venv ohif e2e-setup run test lint unit integration integration-trixie e2e bench clean

setup: apt venv

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

venv: $(VENV)/.installed-$(PYTHON_NAME)

# The package in editable mode with its extras, every version from constraints.txt; and the
# runtime dependencies' wheels in $(WHEELHOUSE), from which the wheel test
# (tests/integration/test_wheel.py) installs the built wheel in a fresh venv, offline.
WHEELHOUSE := $(VENV)/wheelhouse
$(VENV)/.installed-$(PYTHON_NAME): constraints.txt pyproject.toml
	@case "$(PYTHON_NAME)" in python3.[0-9]*) \
	  if [ -x $(PY) ] && [ "$$($(PY) -c 'import sys; print("python%d.%d" % sys.version_info[:2])')" != "$(PYTHON_NAME)" ]; then \
	    echo "$(VENV) is not made from $(PYTHON_NAME), the interpreter of the Orthanc Python plugin: making it again"; \
	    rm -rf $(VENV); \
	  fi;; esac
	@test -x $(PY) || $(SYSTEM_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[training,dev]'
	$(PY) -m pip download -q -d $(WHEELHOUSE) -c constraints.txt --no-build-isolation .
	@rm -f $(VENV)/.installed*; touch $@

# The OHIF viewer (npm package @ohif/app, pinned), served by the plugin at /ohif/.
ohif:
	@command -v npm >/dev/null || $(MAKE) apt APT_PACKAGES="nodejs npm"
	./scripts/setup-ohif.sh

# Chromium, playwright-core and OHIF for the browser tests.
e2e-setup:
	./scripts/setup-e2e.sh

run: setup ohif
	./scripts/run-orthanc.sh

lint: venv
	$(VENV)/bin/ruff check plugin phantoms training tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: venv
	$(VENV)/bin/pytest -q tests/unit

integration: setup
	$(VENV)/bin/pytest -q tests/integration

# SCINTISEG_E2E_REQUIRED=1: a browser test that cannot run fails instead of skipping;
# SCINTISEG_TOOLS_REQUIRED=1 (make test): any test skipped for a missing tool fails
# (Orthanc, orthanc-python, storescu, Chromium, playwright-core, OHIF: tests/required_tools.py).
e2e: setup e2e-setup
	SCINTISEG_E2E_REQUIRED=1 $(VENV)/bin/pytest -q tests/e2e

# The REST fuzzing runs in a process of its own: onnxruntime, loaded by other tests, turns off
# subnormal floats for the whole process, and hypothesis then refuses to generate.
# The fuzzing (hypothesis, schemathesis) draws the same examples on every run, so that a
# failure reproduces and a pass means the same thing each time; `make test HYPOTHESIS=` draws
# new ones.
HYPOTHESIS ?= --hypothesis-seed=0
test: setup e2e-setup lint
	SCINTISEG_E2E_REQUIRED=1 SCINTISEG_TOOLS_REQUIRED=1 $(VENV)/bin/pytest -q $(HYPOTHESIS) tests --ignore=tests/integration/test_fuzz_api.py
	SCINTISEG_TOOLS_REQUIRED=1 $(VENV)/bin/pytest -q $(HYPOTHESIS) tests/integration/test_fuzz_api.py
	./scripts/trixie-integration.sh $(HYPOTHESIS)

# The integration tests on Debian 13's Orthanc 1.12 and Python plugin 5.0, in a trixie chroot
# under build/ (root; a Debian mirror and PyPI): part of `make test`.
integration-trixie:
	./scripts/trixie-integration.sh

bench: setup
	$(PY) bench/bench_pipeline.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
