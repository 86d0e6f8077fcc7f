# limelight developer tasks. Every target sets up .venv from the project's own files first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test test-fast lint demo bench bench-gpu bench-faithfulness docs clean

install: $(STAMP)

# contrib/limelight-onnx is a separate distribution (a third-party backend plugin kept in
# this repository); it is installed beside limelight, as a user would install it.
ONNX := contrib/limelight-onnx

$(STAMP): pyproject.toml constraints.txt $(ONNX)/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/pip install --quiet -c constraints.txt -e $(ONNX)
	touch $(STAMP)

test: install lint
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site
	$(BIN)/python -m pytest -n 2 -q tests $(ONNX)/tests --nbmake docs/tutorial.ipynb

# Typed public API and lint: mypy on src/ (config in pyproject.toml), ruff everywhere.
lint: install
	$(BIN)/mypy src $(ONNX)/src
	$(BIN)/ruff check src tests benchmarks scripts examples contrib

# The fast lane (under 3 minutes on 2 cores): every test not marked slow; no docs, lint or notebook.
test-fast: install
	$(BIN)/python -m pytest -n 2 -q -m "not slow" tests $(ONNX)/tests

demo: install
	$(BIN)/limelight demo --out out/demo

bench-faithfulness: install
	$(BIN)/limelight benchmark --out out/benchmark.md

bench: install
	$(BIN)/python benchmarks/bench_gradcam.py
	$(BIN)/python benchmarks/bench_shap.py
	$(BIN)/python benchmarks/bench_gradient_free.py

# On a machine with a CUDA GPU: both benchmarks with --device cuda, then tests/test_cuda.py.
bench-gpu: install
	PYTHON=$(BIN)/python bash benchmarks/gpu.sh

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
