# The two commands of the README: `make run` and `make test`. Everything else here serves them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NOTEBOOK := Fashion_mnist_model.ipynb

.PHONY: run test lint data bench bench-grid report clean

run: $(VENV)/.run-deps data
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=-1 $(NOTEBOOK)
	$(PY) -m study.report

test: $(VENV)/.test-deps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(VENV)/.test-deps
	$(VENV)/bin/ruff check .

# Downloads the four files into data/fashion unless FASHION_MNIST_DIR names a folder that holds them.
data: $(VENV)/.run-deps
	$(PY) -c "import mnist_reader as r; print('Fashion-MNIST in', r.download_fashion_mnist(r.resolve_data_dir()))"

# PyTorch is a benchmark reference only, never a dependency of the project.
bench: $(VENV)/.test-deps
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==2.13.0
	$(PY) bench/bench_train.py
	$(PY) bench/bench_beyond.py

bench-grid: $(VENV)/.test-deps
	$(PY) bench/bench_grid.py

report: $(VENV)/.run-deps
	$(PY) -m study.report

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	touch $@

$(VENV)/.run-deps: requirements.txt $(VENV)/.created
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.test-deps: requirements-dev.txt $(VENV)/.run-deps
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
