"""Executes Fashion_mnist_model.ipynb in quick mode on a small synthetic data set, in a real kernel."""

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from idx_files import write_fake_fashion_mnist
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from modules import MLP
from study import config, grid, halving, runs

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "Fashion_mnist_model.ipynb"
FIGURES = [
    "class_samples.png",
    "grid_results.png",
    "example_runs.png",
    "best_model_history.png",
    "confusion_matrix.png",
    "test_predictions.png",
    "first_layer_weights.png",
    "first_layer_weight_changes.png",
    "second_layer_units.png",
    "activation_heatmap.png",
    "mean_activation_per_class.png",
    "beyond_history.png",
    "beyond_confusion_matrices.png",
]


def execute(notebook):
    """Run every cell in one fresh python3 kernel started in the repository root; return the executed notebook.

    The saved outputs of the full run are cleared first, so that only this execution's outputs remain.
    """
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(REPO)}})
    client.execute()
    return notebook


def assert_repository_untouched(cfg):
    """None of the quick run's outputs went to the repository (where a full run may be writing right now)."""
    quick_runs = {f"{runs.run_name(s)}.csv" for s in cfg.grid}
    assert not quick_runs & {p.name for p in (REPO / "log" / "histories").glob("*.csv")}
    results = REPO / "log" / "results.json"
    assert not results.exists() or json.loads(results.read_text())["quick"] is False


@pytest.fixture
def quick_env(tmp_path, monkeypatch):
    """Environment of a quick run; the kernel inherits os.environ when it starts."""
    monkeypatch.setenv("FMNIST_QUICK", "1")
    monkeypatch.setenv("FMNIST_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the notebook's figures must go to the inline backend
    return tmp_path


def test_quick_run_produces_every_artefact(quick_env, monkeypatch):
    data_dir = write_fake_fashion_mnist(quick_env / "data", n_train=5000, n_test=1000)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(data_dir))

    nb = execute(nbformat.read(NOTEBOOK, as_version=4))

    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code_cells] == list(range(1, len(code_cells) + 1))
    outputs = [output for cell in code_cells for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    # Each figure is shown exactly once.
    assert sum("image/png" in o.get("data", {}) for o in outputs) == len(FIGURES)

    out = quick_env / "out"
    cfg = config.study_config(quick=True, output_dir=out)
    log = grid.read_log(out / "log" / "grid_search.csv")
    assert len(log) == len(cfg.grid) == 8
    assert sorted(p.name for p in (out / "log" / "histories").iterdir()) == sorted(
        f"{runs.run_name(s)}.csv" for s in cfg.grid
    )
    for settings in cfg.example_runs:
        history = pd.read_csv(out / "log" / "histories" / f"{runs.run_name(settings)}.csv")
        assert len(history) > 1
    assert (out / "weights" / "best_model.npz").stat().st_size > 0
    beyond_model = MLP.from_file(out / "weights" / "beyond_model.npz")
    assert beyond_model.layers == list(cfg.wide_settings["layers"]) and beyond_model.dropout == 0.3
    halving_log = halving.read_halving_log(out / "log" / "halving_search.csv")
    assert [len(rung) for _, rung in halving_log.groupby("rung")] == [runs for runs, _ in halving.rung_plan(
        len(cfg.grid), cfg.halving_factor, cfg.halving_min_epochs, cfg.max_epoch)]
    for name in FIGURES:
        assert (out / "figures" / name).read_bytes().startswith(b"\x89PNG"), name
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(FIGURES)

    results = json.loads((out / "log" / "results.json").read_text())
    assert results["quick"] is True
    assert results["test"]["images"] == 1000
    assert results["test"]["accuracy"] > 0.5  # the synthetic classes are learnable
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
    assert results["halving"]["epochs"] < results["halving"]["grid_epochs"] == 8 * cfg.max_epoch
    assert [row["model"] for row in results["beyond"]["table"]] == [
        "seed grid's best (SGD)", "(a) momentum", "(b) Adam", "(c) wide, dropout, AdamW"]
    assert results["beyond"]["table"][-1]["test_accuracy"] == results["beyond"]["test_accuracy"]

    assert_repository_untouched(cfg)


def test_missing_data_stops_the_first_cell_with_how_to_get_it(quick_env, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(quick_env / "empty"))
    nb = nbformat.read(NOTEBOOK, as_version=4)

    with pytest.raises(CellExecutionError) as error:
        execute(nb)

    assert error.value.ename == "FileNotFoundError"
    for hint in ("download_fashion_mnist", "FASHION_MNIST_DIR", str(quick_env / "empty")):
        assert hint in error.value.evalue
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [o.output_type for o in code_cells[0].outputs] == ["error"]
    assert all(cell.execution_count is None for cell in code_cells[1:])
