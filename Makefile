# The three commands of the README: `make notebook`, `make run` and `make test`. Everything else here serves them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NOTEBOOK := Fashion_mnist_model.ipynb
# The second notebook (sections 7, 9 and 10) reads the first one's model: it runs after it.
NOTEBOOK2 := How_far_can_an_MLP_go.ipynb
NOTEBOOKS := $(NOTEBOOK) $(NOTEBOOK2)

.PHONY: notebook run run-all reproduce test lint data bench bench-grid budget shift frontier teacher report clean

# make notebook: Jupyter Lab on both notebooks, for reading them and choosing Run All (about a minute each: they
# resume from the committed logs and train nothing). The kernel is .venv's own Python: study/lab.py puts .venv/share/jupyter first on
# JUPYTER_PATH, so that the notebook's kernelspec `python3` resolves to .venv's spec (a bare `python`, which Jupyter
# runs as the server's own Python) even when another python3 kernelspec sits in ~/.local/share/jupyter or
# /usr/local/share/jupyter, checks that it does, and starts Jupyter Lab with --allow-root when run as root.
# PORT=n serves on port n (default 8888, or the next free one); NO_BROWSER=1 opens no browser (on a remote machine:
# `ssh -L 8888:localhost:8888 host`, then the URL it prints); JUPYTER_ARGS="..." passes any other options of
# Jupyter Lab (--ip=0.0.0.0, say). tests/test_make_notebook.py starts this very recipe.
PORT ?=
NO_BROWSER ?= 0
JUPYTER_ARGS ?=

notebook: $(VENV)/.run-deps data
	$(PY) -m study.lab $(if $(PORT),--port=$(PORT)) $(if $(filter 1,$(NO_BROWSER)),--no-browser) $(JUPYTER_ARGS)

# make run: the whole study, every part trained again, both notebooks executed in place by papermill (the first, then
# the second, which reads the first one's model) with their outputs shown in the terminal as they come; then both
# tidied (progress bars kept at their final state) and the README's results rewritten from log/results.json, to which
# each notebook writes its own part; last, study.prose checks, for each notebook, that every number its observations
# quote is one its run printed: on the BLAS kernels that recorded the committed logs it fails, naming them, when a
# number moved (the code changed); on other kernels it ends well and writes what moved into the notebook, a banner at
# its top and a list at its end (the README's "What reproduces where"). FRESH=0 resumes from the logs instead;
# JOBS=n trains n runs at once (default: one per core). QUICK=1 runs both notebooks in quick mode into one new
# temporary folder, and leaves the repository as it was. Sections 9's and 10's runs are read from their records
# (`make frontier` and `make teacher` train them, hours on 2 cores: the README says how many); FRONTIER=1 trains
# section 9's here too, afresh with FRESH.
QUICK ?= 0
FRESH ?= 1
FRONTIER ?= 0
JOBS ?=
PAPERMILL = $(VENV)/bin/papermill --log-output --no-progress-bar --log-level INFO $(if $(JOBS),-p N_JOBS $(JOBS))
# The second notebook alone has a FRONTIER parameter (the first has none: papermill would warn and pass it anyway).
FRONTIER_PARAMETER = $(if $(filter 1,$(FRONTIER)),-p FRONTIER True)

run: $(VENV)/.run-deps data
ifeq ($(QUICK),1)
	@out=$$(mktemp -d "$${TMPDIR:-/tmp}/fmnist_quick_XXXXXX") && \
	echo "quick run: the notebooks and their outputs go to $$out" && \
	$(PAPERMILL) -p QUICK True -p FRESH True -p OUTPUT_DIR "$$out" $(NOTEBOOK) "$$out/$(NOTEBOOK)" && \
	$(PAPERMILL) $(FRONTIER_PARAMETER) -p QUICK True -p FRESH True -p OUTPUT_DIR "$$out" $(NOTEBOOK2) \
		"$$out/$(NOTEBOOK2)" && \
	$(PY) -m study.tidy "$$out/$(NOTEBOOK)" "$$out/$(NOTEBOOK2)" && \
	echo "quick run done: $(addprefix $$out/,$(NOTEBOOKS)), with log/, weights/ and figures/ beside them"
else
	$(PAPERMILL) -p QUICK False -p FRESH $(if $(filter 0,$(FRESH)),False,True) $(NOTEBOOK) $(NOTEBOOK)
	$(PAPERMILL) $(FRONTIER_PARAMETER) -p QUICK False -p FRESH $(if $(filter 0,$(FRESH)),False,True) $(NOTEBOOK2) \
		$(NOTEBOOK2)
	$(PY) -m study.tidy $(NOTEBOOKS)
	$(PY) -m study.report
	$(PY) -m study.prose $(NOTEBOOK)
	$(PY) -m study.prose $(NOTEBOOK2)
endif

# make reproduce: whether the committed records come out of the code on this machine (study/reproduce.py, about a
# minute on 2 cores): a grid run, the final model's first epochs and a frontier candidate's first epoch trained
# again, bit for bit on the kernels that recorded them, which it sets for its own command (OPENBLAS_CORETYPE) where the
# processor runs them, else within the spread their rounding explains. MACHINE_KERNELS=1 keeps this machine's kernels.
MACHINE_KERNELS ?= 0

reproduce: $(VENV)/.run-deps data
	$(PY) -m study.reproduce $(if $(filter 1,$(MACHINE_KERNELS)),--machine-kernels)

test: $(VENV)/.test-deps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(VENV)/.test-deps
	$(VENV)/bin/ruff check .

# Downloads the four files into data/fashion unless FASHION_MNIST_DIR names a folder that holds them.
data: $(VENV)/.run-deps
	$(PY) -c "import mnist_reader as r; print('Fashion-MNIST in', r.download_fashion_mnist(r.resolve_data_dir()))"

# PyTorch is a benchmark reference only, never a dependency of the project. The benchmarks run OpenBLAS on the
# kernels it chooses for the processor: some machines set OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for older OpenBLAS
# builds, which slow a current one (Haswell kernels on an AVX-512 processor), so they are unset for the benchmarks
# alone; each result file names the kernels that ran. Training, the notebook and the tests keep the machine's setting.
BENCH_PY := env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY)

bench: $(VENV)/.test-deps
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==2.13.0
	$(BENCH_PY) bench/bench_update.py
	$(BENCH_PY) bench/bench_train.py
	$(BENCH_PY) bench/bench_beyond.py
	$(BENCH_PY) bench/bench_epochs.py
	$(BENCH_PY) bench/bench_frontier.py
	$(BENCH_PY) bench/bench_cnn.py

bench-grid: $(VENV)/.test-deps
	$(BENCH_PY) bench/bench_grid.py

# How many epochs section 7's wide network trains, chosen on validation (study/budget.py: each budget with two seeds,
# about 30 minutes on 2 cores).
budget: $(VENV)/.run-deps data
	$(PY) -m study.budget

# The validation/test shift measured without a model (study/shift.py: 1-nearest-neighbour on five splits, a few
# minutes), logged in log/shift.csv, which no notebook reads any more.
shift: $(VENV)/.run-deps data
	$(PY) -m study.shift

# Section 9's runs, trained once and recorded as each finishes (study/frontier.py; hours on 2 cores, the README says
# how many): the candidates of both rounds, the first round's members, then the finals (study/finals.py).
# Interrupted, it goes on where it stopped; `python -m study.frontier --status` says what is left.
# SCHEDULER=tcp://HOST:8786 trains them on a Dask cluster instead of this machine's cores.
frontier: $(VENV)/.run-deps data
	$(PY) -m study.frontier $(if $(JOBS),--jobs $(JOBS)) $(if $(SCHEDULER),--scheduler $(SCHEDULER))

# Section 10's runs, the convolutional teacher and its students (study/teacher.py; hours on 2 cores, pre-registered in
# How_far_can_an_MLP_go.ipynb): recorded as each finishes, resumed where it stopped; `python -m study.teacher
# --status` says what is left.
teacher: $(VENV)/.run-deps data
	$(PY) -m study.teacher $(if $(JOBS),--jobs $(JOBS))

report: $(VENV)/.run-deps
	$(PY) -m study.report

# Run All of each notebook as its reader runs it, on a fresh clone of the last commit: each must train nothing and
# change nothing, and each "Try it yourself" snippet must run; their wall times go to log/run_all.json for the README
# (study/runall.py; about a minute each).
run-all: $(VENV)/.run-deps data
	$(PY) -m study.runall --write

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
