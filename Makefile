# genlab: two commands on a fresh machine.
#   make demo   train flow matching on the default 2D data, sample, evaluate, write figures
#   make test   run the test suite (what CI runs)
# Each sets up .venv on first use. torch is pinned to the CPU build 2.13.0 (constraints.txt)
# so pip never pulls a CUDA build.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test test-fast lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# the code of three packages without their dependencies: pytorch-fid for the test that
	# checks genlab's Frechet distance against its own on random features (its torchvision is
	# not needed for that, and the PyPI torchvision is built for CUDA torch; `pip install
	# '.[fid]'` installs both), and the peers' flow-matching code that the quick run of
	# benchmarks/ahead.py trains against (torchcfm's other dependencies, torchdyn and lightning,
	# are for its examples; `pip install '.[bench]'` installs everything)
	$(PY) -m pip install -q --no-deps pytorch-fid==0.3.0 torchcfm==1.0.7 flow-matching==1.0.10
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/genlab demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
