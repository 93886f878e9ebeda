# Everything runs in .venv, created from nothing but Python 3.10+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv test demo docs bench soak clean

help:
	@echo "make test   - create $(VENV) with the test dependencies and run the whole suite"
	@echo "make demo   - init, push and pull a sample project against a local S3 server"
	@echo "make docs   - build the Sphinx docs (warnings are errors) into docs/_build/html"
	@echo "make bench  - time datakit-data against aws s3 sync and s5cmd through 20 ms of RTT (BENCH_SCALE=1: 100,000 files)"
	@echo "make soak   - 3 clones pushing at once for 20 rounds: acknowledged pushes, conflicts, lost lines"
	@echo "              (SOAK_AWS=/usr/bin/aws make soak: the same with AWS CLI v2; BENCH_AWS likewise for bench)"
	@echo "make clean  - remove $(VENV) and build output"

$(STAMP): setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	touch $(STAMP)

venv: $(STAMP)

# Two workers, each with its own S3 servers: most of a test is waiting on processes
# and on the servers, so two halve the wall time on two cores (about 400 s, not 600 s).
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

demo: $(STAMP)
	$(BIN)/python tests/demo.py

docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

$(VENV)/.bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,docs,bench]'
	touch $(VENV)/.bench

bench: $(VENV)/.bench
	$(BIN)/python benchmarks/bench.py

soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py

clean:
	rm -rf $(VENV) docs/_build build dist *.egg-info
