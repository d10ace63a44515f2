# `make bench`: install if needed, then run the microbenchmarks (the main job).
# `make test`:  install if needed, then run the test suite.
PYTHON ?= python
PIP := $(PYTHON) -m pip
TORCH_SPEC ?= torch
DEPS := ninja pybind11 pytest numpy tqdm matplotlib

.PHONY: deps install ensure test bench clean

deps:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)"
	@$(PYTHON) -c "import ninja, pybind11, pytest, numpy, tqdm, matplotlib" 2>/dev/null || $(PIP) install $(DEPS)

# Rebuilds the extension (after editing csrc/, or after changing torch).
install: deps
	MAX_JOBS=$${MAX_JOBS:-$$(nproc)} $(PIP) install --no-build-isolation --no-deps -e .

ensure: deps
	@$(PYTHON) -c "import lstm_fused" 2>/dev/null || $(MAKE) install

test: ensure
	$(PYTHON) -m pytest -q tests

bench: ensure
	$(PYTHON) -m lstm_fused.bench $(ARGS)

clean:
	rm -rf build *.egg-info lstm_fused/_C*.so lstm_fused/_build_info.py
