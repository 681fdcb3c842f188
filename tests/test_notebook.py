"""Executes Fashion_mnist_model.ipynb as `make run QUICK=1` does, with papermill and its parameters, on a small
synthetic data set in a real kernel, with the snippets of its 'Try it yourself' appended as cells after its own, as a
reader would paste them; then tidies it as `make run` does and reads it as a reader without Jupyter would, rendered
to HTML by nbconvert."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import papermill
import pytest
from idx_files import write_fake_fashion_mnist
from nbconvert import HTMLExporter

from study import config, grid, runall, runs, seeds, study_results, tidy

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "Fashion_mnist_model.ipynb"
FIGURES = [
    "class_samples.png",
    "grid_results.png",
    "best_model_history.png",
    "confusion_matrix.png",
    "confident_mistakes.png",
    "first_layer_weights.png",
    "first_layer_weight_changes.png",
    "activation_heatmap.png",
]
PROGRESS_BARS = ["grid search", "baseline", "seeds"]
SECTIONS = ["1. Load the data", "2. Build the network and check it", "2. The code that learns", "2. A baseline",
            "3. The grid search", "4. The chosen settings, trained again", "5. The test set, once",
            "6. Inside the network", "8. How much is luck: other seeds"]


def with_exercises(path):
    """A copy of the notebook at ``path`` with each snippet of its 'Try it yourself' (as ``make run-all`` finds them,
    ``runall.exercises``) appended as a code cell tagged ``exercise``, after the notebook's own cells."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for snippet in runall.exercises(nb):
        nb.cells.append(nbformat.v4.new_code_cell(snippet, metadata={"tags": ["exercise"]}))
    nbformat.write(nb, path)
    return path


def execute(output_path, notebook=NOTEBOOK, **parameters):
    """Execute ``notebook`` with papermill and ``parameters`` in a fresh python3 kernel started in the repository
    root, write it to ``output_path``, keep a copy as papermill wrote it (``.raw.ipynb``), tidy it as `make run` does
    (``study.tidy``), and return it."""
    output_path = Path(output_path)
    try:
        papermill.execute_notebook(notebook, output_path, parameters=parameters, cwd=str(REPO),
                                   kernel_name="python3", progress_bar=False, log_output=False)
    finally:
        if output_path.exists():
            output_path.with_suffix(".raw.ipynb").write_bytes(output_path.read_bytes())
            tidy.tidy_file(output_path)
    return nbformat.read(output_path, as_version=4)


def assert_repository_untouched(cfg):
    """None of the quick run's outputs went to the repository (where a full run may be writing right now)."""
    quick_runs = {f"{runs.run_name(s)}.csv" for s in cfg.grid}
    assert not quick_runs & {p.name for p in (REPO / "log" / "histories").glob("*.csv")}
    results = REPO / "log" / "results.json"
    assert not results.exists() or json.loads(results.read_text())["quick"] is False


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick execution for the module's tests: the parameter QUICK = True alone, as a reader of the README
    would set it, so the outputs go to the temporary folder the notebook makes itself (under TMPDIR, which the kernel
    inherits). Returns the executed notebook, its output folder and the folder everything went to."""
    tmp = tmp_path_factory.mktemp("quick")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FASHION_MNIST_DIR", str(write_fake_fashion_mnist(tmp / "data", n_train=5000, n_test=1000)))
        env.setenv("TMPDIR", str(tmp))
        env.delenv("MPLBACKEND", raising=False)  # the notebook's figures must go to the inline backend
        nb = execute(tmp / "executed.ipynb", with_exercises(tmp / "with_exercises.ipynb"), QUICK=True)
    (out,) = tmp.glob("fmnist_quick_*")
    return nb, out, tmp


def test_papermill_injects_after_the_parameters_cell_and_the_tidied_notebook_keeps_only_its_own(quick_run):
    nb, _, tmp = quick_run
    raw = nbformat.read(tmp / "executed.raw.ipynb", as_version=4)
    tags = [cell.metadata.get("tags", []) for cell in raw.cells]
    parameters, injected = tags.index(["parameters"]), tags.index(["injected-parameters"])
    assert injected == parameters + 1
    assert "QUICK = True" in raw.cells[injected].source
    tags = [cell.metadata.get("tags", []) for cell in nb.cells]
    assert ["injected-parameters"] not in tags  # Run All in Jupyter takes the notebook's own parameters
    source = nb.cells[tags.index(["parameters"])].source
    for name, default in (("QUICK", "False"), ("FRESH", "False"), ("N_JOBS", "None"), ("OUTPUT_DIR", "None")):
        assert re.search(rf"^{name} = {default}\b", source, re.MULTILINE), name
    assert re.search(r"^FRESH = False +# True: train every part again", source, re.MULTILINE)  # how to ask for it


def test_quick_run_produces_every_artefact(quick_run):
    nb, out, _ = quick_run
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code_cells] == list(range(1, len(code_cells) + 1))
    outputs = [output for cell in code_cells for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    # Each figure is shown exactly once.
    assert sum("image/png" in o.get("data", {}) for o in outputs) == len(FIGURES)

    cfg = config.study_config(quick=True, output_dir=out)
    log = grid.read_log(out / "log" / "grid_search.csv")
    assert len(log) == len(cfg.grid) == 8
    assert sorted(p.name for p in (out / "log" / "histories").iterdir()) == sorted(
        f"{runs.run_name(s)}.csv" for s in cfg.grid
    )
    assert (out / "weights" / "best_model.npz").stat().st_size > 0
    assert set(cfg.model_records.read_log()) == {"best_model", *cfg.baseline_candidates()}  # all recorded
    assert sorted(seeds.read_seed_log(cfg.seeds_log_path)["seed"]) == list(cfg.seeds)
    for name in FIGURES:
        assert (out / "figures" / name).read_bytes().startswith(b"\x89PNG"), name
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(FIGURES)

    results = json.loads((out / "log" / "results.json").read_text())
    assert set(results) == {*study_results.STUDY_KEYS, "machine", "written_at"}  # this notebook's part alone
    assert results["quick"] is True
    assert results["test"]["images"] == 1000
    assert results["test"]["accuracy"] > 0.5  # the synthetic classes are learnable
    assert results["test"]["ci"][0] < results["test"]["accuracy"] <= results["test"]["ci"][1]
    assert results["test"]["loss"] > 0
    assert tuple(results["best"]["layers"]) == grid.best_settings(log)["layers"]
    assert len(results["top5"]) == 5
    assert results["top5"][0]["best_val_acc"] == results["best"]["best_val_acc"]
    assert results["grid"]["runs"] == results["grid"]["trained_now"] == 8
    for key in ("wall_time_s", "sum_train_time_s"):
        assert results["grid"][key] > 0
    assert 0 < results["final_training"]["wall_time_s"] < results["notebook_wall_time_s"]
    # Retrained with the grid workers' thread count, the best run repeats itself exactly.
    assert results["final_training"]["best_val_acc"] == pytest.approx(results["best"]["best_val_acc"], abs=1e-12)
    assert results["final_training"]["best_iteration"] == results["top5"][0]["best_iteration"]
    assert results["machine"]["cpu_count"] >= 1 and results["machine"]["numpy"]
    low, high = results["baseline"]["test_ci"]
    assert low <= results["baseline"]["test_accuracy"] <= high
    assert [row["model"] for row in results["baseline"]["mcnemar"]] == ["MLP"]
    assert [row["seed"] for row in results["seeds"]["table"]] == list(cfg.seeds)
    summary = results["seeds"]["summary"]
    assert summary["test"]["n"] == len(cfg.seeds) and summary["single_run"]["seed"] == cfg.seed
    assert summary["single_run"]["test"]["value"] == results["test"]["accuracy"]
    assert "original_test" not in summary  # the original study's number is not compared with synthetic data
    assert list(results["sections_wall_time_s"]) == SECTIONS

    assert_repository_untouched(cfg)


def test_every_snippet_of_try_it_yourself_runs_after_the_notebook(quick_run):
    nb, _, _ = quick_run
    exercises = [cell for cell in nb.cells if "exercise" in cell.metadata.get("tags", [])]
    assert len(exercises) >= 4
    for cell in exercises:
        assert cell.execution_count is not None, cell.source
        assert not [output for output in cell.outputs if output.output_type == "error"], cell.source
        assert cell.outputs, cell.source  # each prints or shows what it asks the reader to look at


def test_the_stored_notebook_reads_cleanly(quick_run):
    """What a reader without Jupyter sees (nbconvert's HTML): each progress bar once, at its final state; every
    section's start and time; short bookkeeping; no widget state; no absolute path of this machine."""
    nb, out, tmp = quick_run
    stored = nbformat.writes(nb)
    assert "widgets" not in nb.metadata and "application/vnd.jupyter.widget" not in stored
    streams = [o.text for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs
               if o.output_type == "stream"]
    assert not [text for text in streams if "\r" in text]
    bar_lines = [line for text in streams for line in text.splitlines() if re.match(r"^[\w ,'-]+:\s+\d+%\|", line)]
    assert sorted(line.split(":")[0] for line in bar_lines) == sorted(PROGRESS_BARS)
    assert all("100%|" in line for line in bar_lines), bar_lines
    printed = "".join(streams)
    for section in SECTIONS:
        assert f"== {section}\n" in printed and f"== {section}: " in printed
    bookkeeping = [o.text for cell in nb.cells if cell.cell_type == "code" and "inspect.getsource" not in cell.source
                   for o in cell.outputs if o.output_type == "stream"]  # the library's code printed is to be read
    assert max(len(text.splitlines()) for text in bookkeeping) <= 25  # bookkeeping stays short

    html, _ = HTMLExporter().from_notebook_node(nb)
    raw_html, _ = HTMLExporter().from_notebook_node(nbformat.read(tmp / "executed.raw.ipynb", as_version=4))
    assert len(re.findall(r"grid search:\s+\d+%\|", raw_html)) > 2  # as papermill stored it: every state
    for bar in PROGRESS_BARS:
        states = re.findall(rf"(?<!frontier ){bar}:\s+(\d+)%\|", html)  # "candidates" is not "frontier candidates"
        assert states == ["100"], (bar, states)
    for path in {str(REPO), str(tmp), str(out), str(Path.home())}:
        assert path not in html and path not in printed, path
    assert "outputs in a folder outside the repository" in html


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_quick_writes_only_to_a_temporary_folder():
    """The recipe `make run QUICK=1` would follow (make -n prints it without running it)."""
    recipe = subprocess.run(["make", "-n", "-s", "run", "QUICK=1"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout
    papermill_line = next(line for line in recipe.splitlines() if "papermill" in line)
    assert "-p QUICK True" in papermill_line and '-p OUTPUT_DIR "$out"' in papermill_line
    assert '"$out/Fashion_mnist_model.ipynb"' in papermill_line and "--log-output" in papermill_line
    assert "study.tidy" in recipe and "study.report" not in recipe
    full = subprocess.run(["make", "-n", "-s", "run", "JOBS=3"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout
    assert "-p QUICK False -p FRESH True" in full and "-p N_JOBS 3" in full
    assert "Fashion_mnist_model.ipynb Fashion_mnist_model.ipynb" in full
    assert full.index("papermill") < full.index("study.tidy") < full.index("study.report")
    resume = subprocess.run(["make", "-n", "-s", "run", "FRESH=0"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout
    assert "-p FRESH False" in resume
    assert "FRONTIER" not in full  # section 9 is read from its records unless asked
    frontier = subprocess.run(["make", "-n", "-s", "run", "FRONTIER=1"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout
    first, second = [line for line in frontier.splitlines() if "papermill" in line]
    assert "-p FRONTIER True" in second and "FRONTIER" not in first  # the first notebook has no such parameter


def test_missing_data_stops_the_first_cell_with_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))

    with pytest.raises(papermill.PapermillExecutionError) as error:
        execute(tmp_path / "executed.ipynb", QUICK=True)

    assert error.value.ename == "FileNotFoundError"
    for hint in ("download_fashion_mnist", "FASHION_MNIST_DIR", str(tmp_path / "empty")):
        assert hint in error.value.evalue
    nb = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    setup = next(i for i, cell in enumerate(code_cells) if "require_files" in cell.source)
    assert [o.output_type for o in code_cells[setup].outputs] == ["error"]
    assert all(cell.execution_count is None for cell in code_cells[setup + 1:])
