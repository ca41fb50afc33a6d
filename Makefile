# refseg-book: `make book` and `make test` set everything up themselves on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The torch / torchvision pair: these releases install from this project's machines' local disk; on
# another machine pip takes them from PyPI. Override e.g. `make test TORCH_PKGS="torch torchvision"`.
TORCH_PKGS ?= torch==2.14.1 torchvision==0.29.1
RUN ?= smoke_cris

.PHONY: sync help setup lint book test test-unit test-notebooks test-book browser reproduce bench clean gpu-kit gpu-check

help:
	@echo "make book     execute every notebook with papermill and build the HTML book (_build/html)"
	@echo "make test     run the whole test suite (unit tests, every notebook cell under nbval with short training)"
	@echo "make lint     ruff check and ruff format --check (package, tests, tools, benchmarks, notebooks' .py)"
	@echo "make reproduce RUN=<configuration>   train one shipped configuration (e.g. RUN=cris_r50_refcoco)"
	@echo "make bench    CPU speed and memory measurements into refseg_core/evidence/"
	@echo "make gpu-kit  prepare .gpu_kit/ (wheels, official CRIS code) for the one-call GPU check"
	@echo "make gpu-check  run the GPU check (on the GPU machine, with .gpu_kit carried); see benchmarks/README.md"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PKGS)
	$(PY) -m pip install --quiet -e ".[book,test]"
	$(PY) -m ipykernel install --prefix $(VENV) --name python3 --display-name "Python 3 (refseg-book)" >/dev/null
	@touch $@

setup: $(STAMP)

# Headless Chromium for the browser test of the built book (Debian packages; needs root and apt).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	      || echo "warning: could not install chromium; the browser test will be skipped"; \
	  else echo "warning: chromium not installed and cannot install it; the browser test will be skipped"; fi; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

book: $(STAMP)
	$(PY) tools/build_book.py

test: $(STAMP) browser
	$(PY) -m pytest tests
	$(MAKE) --no-print-directory test-notebooks

# Every cell of every chapter under nbval, each .ipynb alone in an empty folder with the package installed
# from a wheel, as in Colab (tools/colab_check.py), with short training (tests/nbval_quick.yaml);
# `make book` runs the chapters' full smoke budgets.
test-notebooks: $(STAMP)
	$(PY) tools/colab_check.py

test-unit: $(STAMP)
	$(PY) -m pytest tests -m "not slow and not browser"

test-book: $(STAMP) browser
	$(PY) -m pytest tests/test_book_browser.py tests/test_smoke_learning.py
	-$(PY) benchmarks/smoke_times.py --out-dir _build/bench

reproduce: $(STAMP)
	$(PY) -m refseg_core train --config $(RUN)

bench: $(STAMP)
	$(PY) benchmarks/run_cpu.py

# The GPU check (benchmarks/gpu_check.py): `make gpu-kit` here, then `make gpu-check` on the GPU machine with
# .gpu_kit carried. It runs under that machine's own python3 (GPU_PYTHON), adding the kit's wheels only where
# an import is missing; rows go to $$OUT (the device call's folder) or _build/gpu_check.
GPU_KIT ?= .gpu_kit
GPU_PYTHON ?= python3
GPU_SITE ?= /tmp/refseg_gpu_site
GPU_CHECK_OUT ?= $(if $(OUT),$(OUT),_build/gpu_check)
GPU_CHECK_ARGS ?=

gpu-kit: $(STAMP)
	$(PY) benchmarks/gpu_kit.py --out $(GPU_KIT)

gpu-check:
	@$(GPU_PYTHON) -c "import open_clip, pycocotools, ftfy" 2>/dev/null || \
	  $(GPU_PYTHON) -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
	    --target $(GPU_SITE) $(GPU_KIT)/wheels/*.whl
	PYTHONPATH=$(GPU_SITE):$(CURDIR) PYTHONUNBUFFERED=1 $(GPU_PYTHON) benchmarks/gpu_check.py \
	  --official-repo $(GPU_KIT)/CRIS.pytorch --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

clean:
	rm -rf _build

# Regenerate the committed .ipynb (no outputs) from the Jupytext sources; --update keeps the cell ids.
sync: $(STAMP)
	$(VENV)/bin/jupytext --update --to ipynb --update-metadata '{"jupytext": {"formats": "ipynb,py:percent"}}' notebooks/[0-9][0-9]_*.py
