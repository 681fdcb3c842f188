"""Executes Fashion_mnist_model.ipynb as `make run QUICK=1` does, with papermill and its parameters, on a small
synthetic data set in a real kernel; then tidies it as `make run` does and reads it as a reader without Jupyter would,
rendered to HTML by nbconvert."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
from idx_files import write_fake_fashion_mnist
from nbconvert import HTMLExporter

from modules import MLP
from study import config, grid, halving, runs, seeds, tidy

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
    "frontier_candidates.png",
    "confident_mistakes.png",
]
PROGRESS_BARS = ["grid search", "halving search", "baseline", "candidates", "wide network", "seeds",
                 "seed histories", "frontier candidates", "frontier members", "frontier, round two",
                 "section 9's finals", "final student"]
SECTIONS = ["1. Load data and preprocess", "2. Build the model", "3. Hyperparameter tuning",
            "4. Train the model with the best hyperparameters", "5. Model test", "6. Visualisation",
            "7. Beyond the original study", "8. The chosen settings with other seeds", "9. How far can an MLP go?"]


def execute(output_path, **parameters):
    """Execute the notebook with papermill and ``parameters`` in a fresh python3 kernel started in the repository
    root, write it to ``output_path``, keep a copy as papermill wrote it (``.raw.ipynb``), tidy it as `make run` does
    (``study.tidy``), and return it."""
    output_path = Path(output_path)
    try:
        papermill.execute_notebook(NOTEBOOK, output_path, parameters=parameters, cwd=str(REPO),
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
        nb = execute(tmp / "executed.ipynb", QUICK=True)
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
    for name, default in (("QUICK", "False"), ("FRESH", "False"), ("FRONTIER", "False"), ("N_JOBS", "None"),
                          ("OUTPUT_DIR", "None")):
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
    for settings in cfg.example_runs:
        history = pd.read_csv(out / "log" / "histories" / f"{runs.run_name(settings)}.csv")
        assert len(history) > 1
    assert (out / "weights" / "best_model.npz").stat().st_size > 0
    momentum, adam = cfg.beyond_candidates(grid.best_settings(log))
    sgd, adamw = cfg.ablation_candidates(grid.best_settings(log))
    assert set(cfg.model_records.read_log()) == {"best_model", "beyond_model", *cfg.baseline_candidates(), *momentum,
                                                 *adam, *sgd, *adamw}  # all recorded
    beyond_model = MLP.from_file(out / "weights" / "beyond_model.npz")
    assert beyond_model.layers == list(cfg.wide_settings["layers"]) and beyond_model.dropout == 0.3
    halving_log = halving.read_halving_log(out / "log" / "halving_search.csv")
    assert [len(rung) for _, rung in halving_log.groupby("rung")] == [runs for runs, _ in halving.rung_plan(
        len(cfg.grid), cfg.halving_factor, cfg.halving_min_epochs, cfg.max_epoch)]
    assert len(grid.read_log(cfg.followup_log_path)) == len(cfg.followup_lrs)
    assert sorted(seeds.read_seed_log(cfg.seeds_log_path)["seed"]) == list(cfg.seeds)
    for name in FIGURES:
        assert (out / "figures" / name).read_bytes().startswith(b"\x89PNG"), name
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(FIGURES)

    results = json.loads((out / "log" / "results.json").read_text())
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
    assert results["halving"]["epochs"] < results["halving"]["grid_epochs"] == 8 * cfg.max_epoch
    models = ["seed grid's best (SGD)", "(a) momentum", "(b) Adam", "(c) wide, dropout, AdamW"]
    ablations = ["(c1) wide network, SGD and step schedule", "(c2) seed network, AdamW and cosine"]
    assert [row["model"] for row in results["beyond"]["table"]] == [*models, *ablations]
    assert results["beyond"]["table"][3]["test_accuracy"] == results["beyond"]["test_accuracy"]
    assert all(row["test_ci_low"] <= row["test_accuracy"] <= row["test_ci_high"] for row in results["beyond"]["table"])
    assert [row["model"] for row in results["beyond"]["mcnemar"]] == models[1:]
    assert [row["model"] for row in results["ablation"]["mcnemar"]] == ablations * 2  # against the seed's and (c)
    low, high = results["baseline"]["test_ci"]
    assert low <= results["baseline"]["test_accuracy"] <= high
    assert [row["seed"] for row in results["shift"]["table"]] == list(cfg.shift_seeds)
    assert all(0 < row["p_value"] <= 1 for row in results["beyond"]["mcnemar"])
    followup = results["lr_followup"]
    assert [row["lr"] for row in followup["table"]] == sorted([*cfg.learning_rates, *cfg.followup_lrs])
    assert followup["verdict"]["chosen_lr"] == results["best"]["lr"] and followup["wall_time_s"] > 0
    assert [row["seed"] for row in results["seeds"]["table"]] == list(cfg.seeds)
    summary = results["seeds"]["summary"]
    assert summary["test"]["n"] == len(cfg.seeds) and summary["single_run"]["seed"] == cfg.seed
    assert summary["single_run"]["test"]["value"] == results["test"]["accuracy"]
    assert "original_test" not in summary  # the original study's number is not compared with synthetic data
    assert list(results["sections_wall_time_s"]) == SECTIONS
    frontier = results["frontier"]
    members = [frontier["chosen"], *(f"{frontier['chosen']}_seed{seed}" for seed in cfg.frontier_seeds)]
    assert [row["model"] for row in frontier["test"]] == [*members, "ensemble"]
    chosen_ensemble = [row for row in frontier["ensemble_choices"] if row["chosen"]]
    assert len(chosen_ensemble) == 1
    assert frontier["summary"]["ensemble"]["test_acc"] == frontier["test"][-1]["test_acc"]
    assert [row["reference"] for row in frontier["mcnemar"]].count("wide network (section 7)") == 2
    found = results["finals"]
    final_seeds = [f"{found['chosen']}_all_seed{seed}" for seed in cfg.final_seeds]
    assert [row["model"] for row in found["test"]] == [*final_seeds, "distilled_all", "ensemble"]
    assert len({row["train_rows"] for row in found["test"]}) == 1  # every final model on the same rows, all of them
    assert found["summary"]["seeds"]["n"] == len(cfg.final_seeds) and found["summary"]["ensemble"]["members"] == len(
        found["members"])
    assert [row["reference"] for row in found["mcnemar"]].count("wide network (section 7)") == 3
    assert [row["chosen"] for row in found["students"]].count(True) == 1
    assert set(cfg.frontier_records.read_log()) == {  # every run recorded
        *cfg.frontier_candidates, *members[1:], *cfg.frontier_round_two, *final_seeds, "distilled_all",
        *(f"{name}_all_seed0" for name in found["members"]),
        *(f"distilled_T{t:g}" for t in cfg.distill_temperatures)}

    assert_repository_untouched(cfg)


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
    assert sorted(line.split(":")[0] for line in bar_lines) == sorted([*PROGRESS_BARS, "learning rate follow-up"])
    assert all("100%|" in line for line in bar_lines), bar_lines
    printed = "".join(streams)
    for section in SECTIONS:
        assert f"== {section}\n" in printed and f"== {section}: " in printed
    assert max(len(text.splitlines()) for text in streams) <= 25  # bookkeeping stays short

    html, _ = HTMLExporter().from_notebook_node(nb)
    raw_html, _ = HTMLExporter().from_notebook_node(nbformat.read(tmp / "executed.raw.ipynb", as_version=4))
    assert len(re.findall(r"grid search:\s+\d+%\|", raw_html)) > 2  # as papermill stored it: every state
    for bar in [*PROGRESS_BARS, "learning rate follow-up"]:
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
    assert "-p FRONTIER True" in frontier


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
