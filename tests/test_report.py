"""study.report on a temporary project folder with fake results; the real README is never touched (but for the
last test, which only reads it)."""

import contextlib
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import threadpoolctl

from study import benches, config, followup, grid, how_far, report, results_shape, runs, seeds, stats, study_results

README = """# Project

Intro text that must survive.

## Results

<!-- results:start -->
old results, to be replaced
<!-- results:end -->

## After

More text | with a table-like line.
"""

RESULTS = {
    "quick": False,
    "test": {"accuracy": 0.8934, "loss": 0.3012, "images": 10000},
    "best": {"layers": [784, 256, 128, 10], "lr": 0.05, "L2_lambda": 0.001, "best_val_acc": 0.9045,
             "best_val_loss": 0.27},
    "top5": [],
    "grid": {"runs": 6, "trained_now": 6, "n_jobs": 2, "wall_time_s": 612.0, "sum_train_time_s": 1180.0},
    "final_training": {"wall_time_s": 47.3, "best_val_acc": 0.9045, "best_iteration": 19800},
    "notebook_wall_time_s": 700.2,
    "machine": {"processor": "Test CPU 3000", "machine": "x86_64", "cpu_count": 2, "python": "3.11.7",
                "numpy": "2.4.6", "blas": "scipy-openblas 0.3.31"},
    "written_at": "2025-01-01T00:00:00+00:00",
}


def _log():
    rows = [
        ("784-256-128-10", 0.05, 0.001, 0.9045, 0.27, False),
        ("784-256-128-10", 0.1, 0.0, 0.9030, 0.29, False),
        ("784-128-64-10", 0.05, 0.0, 0.9001, 0.28, False),
        ("784-128-64-10", 0.1, 0.05, 0.8500, 0.41, False),
        ("784-64-32-10", 0.1, 0.0, 0.8990, 0.30, False),
        ("784-64-32-10", 0.5, 0.0, float("nan"), float("nan"), True),
    ]
    return pd.DataFrame([{"layers": ls, "lr": lr, "L2_lambda": l2, "best_val_acc": acc,
                          "best_val_loss": loss, "train_time_s": 200.0, "best_iteration": 1000, "diverged": div}
                         for ls, lr, l2, acc, loss, div in rows], columns=grid.LOG_COLUMNS)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "log").mkdir()
    (tmp_path / "figures").mkdir()
    (tmp_path / "README.md").write_text(README)
    (tmp_path / "log" / "results.json").write_text(json.dumps(RESULTS))
    _log().to_csv(tmp_path / "log" / "grid_search.csv", index=False)
    for name in ("grid_results.png", "confusion_matrix.png"):
        (tmp_path / "figures" / name).write_bytes(b"\x89PNG")
    return tmp_path


def _block(text):
    return text.split(report.START)[1].split(report.END)[0]


def test_rewrites_only_the_block(project, capsys):
    assert report.main(["--root", str(project)]) == 0
    text = (project / "README.md").read_text()
    head, tail = README.split("old results, to be replaced\n")
    assert text.startswith(head) and text.endswith(tail)
    block = _block(text)
    assert "old results" not in block
    assert "accuracy **0.8934**" in block and "loss 0.3012" in block
    assert "layers 784-256-128-10, learning rate 0.05, L2 0.001; validation accuracy 0.9045" in block
    assert "grid search 10.2 min (6 runs on 2 processes" in block
    assert "add up to 19.7 min" in block
    assert "final training 47 s" in block and "whole notebook 11.7 min" in block
    assert "Test CPU 3000 (x86_64), 2 CPUs, Python 3.11.7, NumPy 2.4.6, BLAS scipy-openblas 0.3.31" in block
    assert "updated" in capsys.readouterr().out


def test_top_five_table(project):
    report.main(["--root", str(project)])
    lines = [ln for ln in _block((project / "README.md").read_text()).splitlines() if ln.startswith("|")]
    assert lines[0].startswith("| rank | layers | learning rate | L2 | val accuracy")
    assert lines[1].startswith("|---|")
    body = lines[2:]
    assert len(body) == 5  # the diverged run is left out
    assert body[0].startswith("| 1 | 784-256-128-10 | 0.05 | 0.001 | 0.9045 | 0.2700 | 1000 | 200 |")
    assert [row.split(" | ")[4] for row in body] == ["0.9045", "0.9030", "0.9001", "0.8990", "0.8500"]


def test_links_only_existing_figures(project):
    report.main(["--root", str(project)])
    block = _block((project / "README.md").read_text())
    assert "(figures/grid_results.png)" in block and "(figures/confusion_matrix.png)" in block
    assert "first_layer_weights.png" not in block


def _bench_block(project, name, bench):
    """The README's results block rendered with the benchmark results ``bench`` in ``bench/<name>``."""
    (project / "bench" / name).write_text(json.dumps(bench))
    report.main(["--root", str(project)])
    return _block((project / "README.md").read_text())


def test_bench_results_when_present(project):
    report.main(["--root", str(project)])
    assert "bench" not in _block((project / "README.md").read_text())
    (project / "bench").mkdir()
    bench = {"data": "Fashion-MNIST", "epochs": 3, "repeats": 3,
             "machine": {"processor": "Bench CPU", "cpus": 2, "numpy": "2.4.6"},
             "contenders": {"numpy MLP": {"seconds_per_epoch": 1.234, "peak_rss_mb": 400.5},
                            "pytorch": {"seconds_per_epoch": 2.0, "peak_rss_mb": 900.0}}}
    block = _bench_block(project, "results.json", bench)
    assert "`bench/bench_train.py`; data Fashion-MNIST, epochs 3, repeats 3" in block
    assert "| contender | seconds per epoch | peak rss mb |" in block
    assert "| numpy MLP | 1.234 | 400 |" in block
    assert "Bench CPU" in block


def test_bench_splits_the_ratio_to_pytorch_when_both_floors_are_timed(project):
    (project / "bench").mkdir()

    def readme_for(contenders):
        bench = {"contenders": {name: {"seconds_per_epoch": seconds} for name, seconds in contenders.items()}}
        (project / "bench" / "frontier_results.json").write_text(json.dumps(bench))
        report.main(["--root", str(project)])
        return (project / "README.md").read_text()

    contenders = {"numpy MLP": 6.0, "matmul floor": 4.0, "pytorch": 10.0, "pytorch matmul floor": 5.0}
    text = readme_for(contenders)
    assert "numpy MLP 2.00 s, pytorch 5.00 s; NumPy's BLAS does the products in 0.80 of PyTorch's" in text
    assert "numpy MLP / pytorch would be 0.67: what a machine" in text  # 6 / (4 + 5)
    text = readme_for(dict(contenders, **{"pytorch fused AdamW": 8.0}))  # the stronger reference, when timed
    assert "numpy MLP 2.00 s, pytorch fused AdamW 3.00 s" in text
    assert "numpy MLP / pytorch fused AdamW would be 0.86" in text  # 6 / (4 + 3)
    del contenders["pytorch matmul floor"]
    assert "own matrix products" not in readme_for(contenders)


def test_cnn_benchmark_when_present(project):
    (project / "bench").mkdir()
    steps = {"im2col (in Conv2D)": 50.0, "Conv2D forward": 100.0, "Conv2D backward": 150.0, "ReLU forward": 4.0,
             "update": 1.0}
    bench = {"data": "Fashion-MNIST", "fraction": 0.05, "repeats": 2, "load_average": {"before": [3.25, 4, 4],
                                                                                        "after": [5.5, 5, 4]},
             "contenders": {"numpy CNN": {"seconds_per_epoch": 300.0, "peak_rss_mb": 900.4},
                            "numpy CNN, one core": {"seconds_per_epoch": 150.0, "peak_rss_mb": 800.0}},
             "ratios": {"numpy CNN / pytorch": 2.345}, "step_ms": steps,
             "epoch": {"seconds": float("nan"), "val_acc_after_one_epoch": float("nan")},
             "machine": {"processor": "Bench CPU", "cpu_count": 2}}
    block = _bench_block(project, "cnn_results.json", bench)
    assert "`bench/bench_cnn.py`; data Fashion-MNIST, 0.05 of an epoch a run, best of 2 runs; \"one core\"" in block
    assert "| numpy CNN, one core | 150.0 | 800 |" in block
    assert "numpy CNN / pytorch: 2.35." in block
    assert "load average over a minute 3.2 before it, 5.5 after" in block
    assert "the convolutions took 250 ms, 50 of them window copies, and everything else 5 ms." in block
    assert "whole epoch" not in block  # not measured in that run


def test_bench_of_unknown_shape_is_noted(project):
    (project / "bench").mkdir()
    (project / "bench" / "results.json").write_text(json.dumps({"something": 1}))
    assert report.main(["--root", str(project)]) == 0
    assert "no `contenders` table" in (project / "README.md").read_text()


def test_second_run_is_stable_and_keeps_file_mode(project):
    os.chmod(project / "README.md", 0o644)
    report.main(["--root", str(project)])
    first = (project / "README.md").read_text()
    report.main(["--root", str(project)])
    assert (project / "README.md").read_text() == first
    assert stat.S_IMODE((project / "README.md").stat().st_mode) == 0o644
    assert sorted(p.name for p in project.iterdir()) == ["README.md", "figures", "log"]  # no temporary left


def test_crlf_line_endings_are_kept(project):
    (project / "README.md").write_bytes(README.replace("\n", "\r\n").encode())
    report.main(["--root", str(project)])
    data = (project / "README.md").read_bytes()
    assert data.startswith(b"# Project\r\n\r\nIntro") and data.endswith(b"table-like line.\r\n")


def test_resumed_grid_is_flagged(project):
    results = dict(RESULTS, grid=dict(RESULTS["grid"], trained_now=2))
    (project / "log" / "results.json").write_text(json.dumps(results))
    report.main(["--root", str(project)])
    assert "Only 2 of the runs were trained" in (project / "README.md").read_text()


@pytest.mark.parametrize("readme", [
    "# no markers at all\n",
    f"only the start\n{report.START}\n",
    f"{report.END}\nreversed\n{report.START}\n",
    f"{report.START}\n{report.START}\ntwice\n{report.END}\n",
])
def test_missing_or_broken_markers_exit_with_a_clear_error(project, capsys, readme):
    (project / "README.md").write_text(readme)
    assert report.main(["--root", str(project)]) == 2
    err = capsys.readouterr().err
    assert "python -m study.report: error:" in err and report.START in err and report.END in err
    assert (project / "README.md").read_text() == readme


@pytest.mark.parametrize("broken, message", [
    ("no results", "run Fashion_mnist_model.ipynb first"),
    ("no log", "grid_search.csv not found"),
    ("quick results", "quick run"),
    ("bad json", "not valid JSON"),
])
def test_missing_inputs_exit_with_a_clear_error(project, capsys, broken, message):
    if broken == "no results":
        (project / "log" / "results.json").unlink()
    elif broken == "no log":
        (project / "log" / "grid_search.csv").unlink()
    elif broken == "quick results":
        (project / "log" / "results.json").write_text(json.dumps(dict(RESULTS, quick=True)))
    else:
        (project / "log" / "results.json").write_text("{not json")
    assert report.main(["--root", str(project)]) == 2
    assert message in capsys.readouterr().err
    assert (project / "README.md").read_text() == README


def test_duration():
    assert benches.duration(42.4) == "42 s"
    assert benches.duration(612) == "10.2 min"
    assert benches.duration(4 * 3600) == "4.00 h"


def test_halving_beyond_and_section_times_when_present(project):
    results = dict(RESULTS)
    results["halving"] = {"settings": {"layers": [784, 128, 64, 10], "lr": 0.1, "L2_lambda": 0.0},
                          "best_val_acc": 0.9001, "epochs": 276, "grid_epochs": 1920, "rungs": 4, "wall_time_s": 80.0}
    results["beyond"] = {"table": [{"model": "(c) wide", "settings": "784-1024-1024-10, adam", "val_accuracy": 0.913,
                                    "test_accuracy": 0.9061, "test_loss": 0.33, "epochs": 60,
                                    "train_time_s": 700.0}],
                         "test_accuracy": 0.9061, "test_loss": 0.33, "wall_time_s": 300.0}
    (project / "log" / "results.json").write_text(json.dumps(results))
    (project / "bench").mkdir()
    (project / "bench" / "beyond_results.json").write_text(json.dumps(
        {"contenders": {"numpy MLP": {"seconds_per_epoch": 6.0}, "pytorch": {"seconds_per_epoch": 4.0}}}))
    assert report.main(["--root", str(project)]) == 0
    text = (project / "README.md").read_text()
    assert "784-128-64-10, learning rate 0.1, L2 0" in text and "0.44 points below" in text
    assert "276 epochs instead of 1920 (14%)" in text
    assert "| (c) wide | 784-1024-1024-10, adam | 0.9130 | 0.9061 | 0.3300 | 60 | 11.7 min |" in text
    assert "successive halving 80 s" in text
    assert "section 7 5.0 min, whole notebook 11.7 min (6.7 min without section 7)" in text
    assert "numpy MLP / pytorch: 1.50" in text
    assert "epochs**" not in text  # no budget log, no budget paragraph

    se = (0.913 * 0.087 / 6000) ** 0.5
    pd.DataFrame([{"max_epoch": epochs, "key": "k", "best_val_acc": acc, "best_val_loss": 0.3, "best_iteration": 9,
                   "train_time_s": 100.0, "diverged": False, "val_images": 6000}
                  for epochs, acc in ((30, 0.913 - 2 * se), (40, 0.913 - se / 2), (60, 0.913))]
                 ).to_csv(project / "log" / "wide_budget.csv", index=False)
    assert report.main(["--root", str(project)]) == 0
    text = (project / "README.md").read_text()
    assert f"trains **40 epochs**, the fewest whose validation accuracy is at least {0.913 - se:.4f}" in text
    assert "| 30 | 0.9057 | 0.3000 | 1.7 min |" in text


def test_grid_benchmark_when_present(project):
    (project / "bench").mkdir()
    (project / "bench" / "grid_results.json").write_text(json.dumps({
        "runs": 48, "epochs": 40,
        "grid": {"seconds_n_jobs_1": 900.0, "seconds_n_jobs_2": 450.0, "n_jobs_1_against_2": {"same": True}},
        "halving": {"seconds": 60.0, "epochs_spent": 276, "grid_epochs": 1920,
                    "settings": "784-256-128-10_lr0.1_L2_lambda0", "gap_points": 0.0}}))
    assert report.main(["--root", str(project)]) == 0
    text = (project / "README.md").read_text()
    assert "7.5 min with `n_jobs=2`, 15.0 min with `n_jobs=1` (2.00 times as long; the two logs hold the same" in text
    assert "276 epochs of the grid's 1920, picking 784-256-128-10_lr0.1_L2_lambda0, 0.00 points" in text


def test_machine_info():
    info = report.machine_info()
    assert info["cpu_count"] >= 1
    assert info["numpy"] == np.__version__
    assert info["processor"] and info["machine"]
    kernels = {pool["architecture"] for pool in threadpoolctl.threadpool_info() if pool["internal_api"] == "openblas"}
    assert all(f"{kernel} kernels" in info["blas"] for kernel in kernels)  # what sets the speed of the products
    json.dumps(info)


def test_write_results_is_plain_json(tmp_path):
    path = tmp_path / "log" / "results.json"
    top = pd.DataFrame({"layers": ["784-10"], "best_val_acc": [np.float64(0.9)]})
    written = report.write_results(path, {"test": {"accuracy": np.float32(0.5), "loss": float("nan")},
                                         "layers": (784, 10), "top5": top, "path": tmp_path})
    loaded = json.loads(path.read_text())
    assert loaded == written
    assert loaded["test"] == {"accuracy": 0.5, "loss": None}
    assert loaded["layers"] == [784, 10]
    assert loaded["top5"] == [{"layers": "784-10", "best_val_acc": 0.9}]
    assert loaded["path"] == str(tmp_path)
    assert loaded["machine"]["cpu_count"] >= 1
    assert "written_at" in loaded
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


def test_the_committed_results_are_those_of_the_readme():
    """The README's results section is what the report makes of the committed log, results.json and benchmarks."""
    root = Path(__file__).resolve().parent.parent
    assert _block(report.build(root)) == _block((root / "README.md").read_bytes().decode("utf-8"))


def _seeds_part():
    """Section 9's five other seeds, as the first notebook passes them: ``{"table", "summary"}``."""
    seed_table = seeds.seed_table([{"seed": s, "key": "k", "best_val_acc": 0.90 + s / 1000, "best_val_loss": 0.28,
                                    "best_iteration": 100, "train_time_s": 30.0, "diverged": False,
                                    "test_correct": 8920 + s, "test_images": 10000} for s in (1, 2, 3, 4, 5)])
    summary = seeds.summary(seed_table, {"seed": 0, "val_acc": 0.9045, "test_acc": 0.8934}, original=0.8932)
    return {"table": seed_table, "summary": summary}


def _measured(log, trained_now=6, wall_s=None, seeds_part=None, sections=None, test=(0.8934, 0.3012, 10000)):
    """The first notebook's part of the results, built as its last cell builds it (``study_results.measured``), with
    a baseline of its own settings and fake numbers."""
    from modules import MLP

    cfg = config.study_config(quick=False)
    settings = MLP([784, 10], **cfg.model_kwargs).config()
    baseline = SimpleNamespace(config=lambda: settings, best_val_acc=0.84)  # as if trained
    found = {"accuracy": 0.8412, "ci_low": 0.834, "ci_high": 0.848}
    rng = np.random.default_rng(2)
    y = rng.integers(0, 10, 1000)
    versus = stats.mcnemar_table(y, {name: np.where(rng.random(1000) < acc, y, (y + 1) % 10)
                                     for name, acc in (("baseline", 0.84), ("MLP", 0.89))}, "baseline")
    seeds_part = seeds_part or _seeds_part()
    wall_s = {"grid": 612.0, "final_training": 47.3, "seeds": 95.0, "notebook": 1000.2, **(wall_s or {})}
    return study_results.measured(cfg, log, trained_now=trained_now, n_jobs=2,
                                  final=SimpleNamespace(best_val_acc=0.9045, best_iteration=1000), test=test,
                                  baseline=(baseline, found), versus_baseline=versus, seeds=seeds_part,
                                  wall_s=wall_s, sections=sections or {})


def _second_part(table, beyond_test=(0.9061, 0.33, 10000), mcnemar=None, candidates=None, ablation=None,
                 budget_rule=None):
    """The second notebook's part of the results, built as its last cell builds it (``how_far.results``), without
    the parts not given (section 9's, and the validation verdicts, have tests of their own)."""
    part = how_far.results(comparison=table, beyond_test=beyond_test, candidates=candidates, ablation=ablation or {
                               "table": None, "mcnemar": None}, budget_rule=budget_rule, validation=None,
                           frontier=None, finals=None, wall_s={"beyond": 300.0, "notebook": 60.0}, mcnemar=mcnemar)
    given = {"candidates": candidates, "ablation": ablation, "budget_rule": budget_rule}
    return {key: value for key, value in part.items()
            if key not in ("validation", "frontier", "finals") and given.get(key, True) is not None}


def test_each_notebooks_part_gathers_what_the_report_reads(project):
    table = pd.DataFrame([{"model": "(c) wide", "settings": "784-1024-1024-10, adam", "val_accuracy": 0.913,
                           "test_accuracy": 0.9061, "test_loss": 0.33, "epochs": 60, "train_time_s": 700.0}])
    results = _measured(_log(), trained_now=4)
    assert list(results) == list(study_results.STUDY_KEYS)
    assert results["runs_trained"] == runs.runs_started
    assert results["quick"] is False
    assert results["test"] == {"accuracy": 0.8934, "loss": 0.3012, "images": 10000,
                               "ci": stats.accuracy_ci(8934, 10000)}
    assert results["best"] == {"layers": (784, 256, 128, 10), "lr": 0.05, "L2_lambda": 0.001, "best_val_acc": 0.9045,
                               "best_val_loss": 0.27}
    pd.testing.assert_frame_equal(results["top5"], grid.top_k(_log(), k=5))
    assert results["grid"] == {"runs": 6, "trained_now": 4, "n_jobs": 2, "wall_time_s": 612.0,
                               "sum_train_time_s": 1200.0}
    assert results["final_training"] == {"wall_time_s": 47.3, "best_val_acc": 0.9045, "best_iteration": 1000}
    assert results["baseline"]["settings"] == "784-10, sgd, lr 0.1, step schedule, no L2"
    assert results["baseline"]["test_ci"] == (0.834, 0.848)
    second = _second_part(table)
    beyond = dict(second["beyond"])
    assert beyond.pop("table") is table
    assert beyond == {"test_accuracy": 0.9061, "test_loss": 0.33, "test_ci": stats.accuracy_ci(9061, 10000),
                      "wall_time_s": 300.0}
    assert results["notebook_wall_time_s"] == 1000.2
    report.write_results(project / "log" / "results.json", {**results, **second})
    assert report.main(["--root", str(project)]) == 0
    block = _block((project / "README.md").read_text())
    assert "layers 784-256-128-10, learning rate 0.05, L2 0.001; validation accuracy 0.9045" in block
    assert "| (c) wide | 784-1024-1024-10, adam | 0.9130 | 0.9061 | 0.3300 | 60 | 11.7 min |" in block
    assert "Only 4 of the runs were trained" in block


def _uncertainty_results():
    """What a notebook of issue 12 passes: the McNemar table, the learning-rate follow-up and the seeds."""
    log = _log()
    best = grid.best_settings(log)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, size=10000)
    reference = np.where(rng.random(10000) < 0.893, y, (y + 1) % 10)
    momentum = reference.copy()  # 20 images more right, 20 more wrong: no evidence of a difference
    momentum[np.flatnonzero(reference != y)[:20]] = y[np.flatnonzero(reference != y)[:20]]
    momentum[np.flatnonzero(reference == y)[:20]] = (y[np.flatnonzero(reference == y)[:20]] + 1) % 10
    predictions = {"seed grid's best (SGD)": reference, "(a) momentum": momentum,
                   "(c) wide": np.where(rng.random(10000) < 0.12, y, reference)}
    significance = stats.mcnemar_table(y, predictions, "seed grid's best (SGD)")
    more = pd.DataFrame([{"layers": "784-256-128-10", "lr": lr, "L2_lambda": 0.001, "best_val_acc": acc,
                          "best_val_loss": 0.3, "train_time_s": 9.0, "best_iteration": 100, "diverged": diverged}
                         for lr, acc, diverged in ((0.2, 0.9050, False), (0.5, float("nan"), True))],
                        columns=grid.LOG_COLUMNS)
    lr_table = followup.lr_table(log, more, best)
    table = pd.DataFrame([{"model": name, "settings": "784-256-128-10", "val_accuracy": 0.9, "test_accuracy": acc,
                           "test_ci_low": acc - 0.006, "test_ci_high": acc + 0.006, "test_loss": 0.3, "epochs": 40,
                           "train_time_s": 30.0} for name, acc in (("seed grid's best (SGD)", 0.8934),
                                                                    ("(c) wide", 0.9))])
    results = {**_measured(log, wall_s={"notebook": 1300.0}, sections={"3. Hyperparameter tuning": 700.0},
                           seeds_part=_seeds_part()),
               **_second_part(table, beyond_test=(0.9, 0.33, 10000), mcnemar=significance)}
    # Successive halving and the learning-rate follow-up, which no notebook measures any more, as the first notebook
    # recorded them; the README still shows them from a results file that holds them.
    results["halving"] = {"settings": best, "best_val_acc": 0.9045, "epochs": 100, "grid_epochs": 6 * 40, "rungs": 3,
                          "wall_time_s": 80.0}
    results["lr_followup"] = {"table": lr_table, "verdict": followup.verdict(lr_table, best), "wall_time_s": 61.0}
    return results


def test_both_parts_carry_the_uncertainty(project):
    results = _uncertainty_results()
    assert results["beyond"]["mcnemar"]["model"].tolist() == ["(a) momentum", "(c) wide"]
    assert results["lr_followup"]["wall_time_s"] == 61.0 and results["lr_followup"]["verdict"]["peak_lr"] == 0.2
    assert results["seeds"]["original_test_accuracy"] == config.ORIGINAL_TEST_ACCURACY
    assert results["seeds"]["wall_time_s"] == 95.0
    assert results["sections_wall_time_s"] == {"3. Hyperparameter tuning": 700.0}
    written = report.write_results(project / "log" / "results.json", results)
    assert written["test"]["ci"] == list(stats.accuracy_ci(8934, 10000))


def test_the_readme_shows_intervals_mcnemar_seeds_and_the_follow_up(project):
    report.write_results(project / "log" / "results.json", _uncertainty_results())
    assert report.main(["--root", str(project)]) == 0
    block = _block((project / "README.md").read_text())
    low, high = stats.accuracy_ci(8934, 10000)
    assert f"accuracy **0.8934 (95% CI {low:.4f}-{high:.4f})**, cross-entropy loss 0.3012" in block
    # Section 7's table with its intervals, then McNemar's table and what it says.
    assert "| model | settings | val accuracy | test accuracy | 95% CI | test loss | epochs | train time |" in block
    assert "| (c) wide | 784-256-128-10 | 0.9000 | 0.9000 | 0.8940-0.9060 | 0.3000 | 40 | 30 s |" in block
    assert "McNemar's exact test" in block
    assert "| model | test accuracy | difference (points) | only the reference right | only the model right |" in block
    assert "| +0.00 | 20 | 20 | 1 | no |" in block
    assert "(c) wide is more accurate than the seed grid's best (SGD)" in block
    assert "(a) momentum does not differ significantly from the seed grid's best (SGD)" in block
    assert "test accuracy **0.9000 (95% CI " in block  # the saved wide model
    # The learning-rate follow-up beside the grid's runs of the same network.
    assert "**Learning rates beyond the grid's largest**" in block
    assert "| 0.05 | 0.9045 | 0.2700 | grid |" in block and "| 0.2 | 0.9050 | 0.3000 | follow-up |" in block
    assert "| 0.5 | diverged |  | follow-up |" in block
    assert "the learning rate would move from 0.05 to 0.2, for +0.05 points" in block
    assert "The model tested above stays the grid's choice." in block
    # The seeds' spread, and where the single run and the original fall in it.
    assert "**The chosen settings with 5 other seeds**" in block
    assert "| 3 | 0.9030 | 0.8923 | " in block
    assert "test accuracy 0.8923 +- 0.0002 (mean +- standard deviation over the 5 runs" in block
    assert "The grid's own run (seed 0), 0.8934 on the test set, lies" in block
    assert "the original study's 0.8932 lies" in block
    assert "learning-rate follow-up 61 s, other seeds (section 8) 1.6 min, section 7 5.0 min" in block


def _part():
    """A notebook's part as ``save_results`` receives it: :func:`_uncertainty_results` without the retired keys."""
    return {key: value for key, value in _uncertainty_results().items() if key not in report.RETIRED_KEYS}


def test_an_execution_that_trained_nothing_keeps_the_recorded_results_byte_for_byte(project, monkeypatch):
    path = project / "log" / "results.json"
    monkeypatch.setattr(runs, "runs_started", 3)
    report.save_results(path, _part())
    text = path.read_bytes()
    monkeypatch.setattr(runs, "runs_started", 0)
    resumed = _part()
    resumed["notebook_wall_time_s"] = resumed["grid"]["wall_time_s"] = 1.5  # a resume is quick: times differ
    resumed["grid"]["trained_now"] = 0
    kept = report.save_results(path, resumed)
    assert path.read_bytes() == text
    assert kept["notebook_wall_time_s"] == _part()["notebook_wall_time_s"] and kept["runs_trained"] == 3


def test_numbers_that_differ_from_the_record_without_training_are_an_error(project, monkeypatch):
    path = project / "log" / "results.json"
    monkeypatch.setattr(runs, "runs_started", 1)
    report.save_results(path, _part())
    text = path.read_bytes()
    monkeypatch.setattr(runs, "runs_started", 0)
    moved = _part()
    moved["test"]["accuracy"] = 0.8935
    with pytest.raises(ValueError, match=r"other numbers .*\['test'\].*make run"):
        report.save_results(path, moved)
    assert path.read_bytes() == text


def test_saving_a_part_takes_the_retired_keys_out_of_the_file(project, monkeypatch):
    path = project / "log" / "results.json"
    report.write_results(path, _uncertainty_results())  # as the first notebook wrote it with halving and the follow-up
    monkeypatch.setattr(runs, "runs_started", 0)
    kept = report.save_results(path, _part())  # the same numbers, nothing trained: only the retired keys go
    assert {"halving", "lr_followup"} <= set(_uncertainty_results()) and not set(report.RETIRED_KEYS) & set(kept)
    assert json.loads(path.read_text()) == kept and set(kept) == {*_part(), "machine", "written_at"}


# -- a results.json, log or benchmark file the report did not write -------------------------------------------------


def _report_fails(project, capsys, *names):
    """Run the report on ``project``: it must exit with status 2 and one line on stderr that names the file and says
    what to do, and leave the README as it was; returns that line."""
    before = (project / "README.md").read_bytes()
    assert report.main(["--root", str(project)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m study.report: error: ") and err.count("\n") == 1, err
    for name in names:
        assert name in err
    assert (project / "README.md").read_bytes() == before
    return err


def _complete_results(project):
    """The results of a notebook of issue 12 as write_results writes them (every part the README shows), with the
    budget log beside them."""
    report.write_results(project / "log" / "results.json", _uncertainty_results())
    pd.DataFrame([{"max_epoch": epochs, "key": "k", "best_val_acc": acc, "best_val_loss": 0.3, "best_iteration": 9,
                   "train_time_s": 100.0, "diverged": False, "val_images": 6000}
                  for epochs, acc in ((30, 0.90), (40, 0.91))]).to_csv(project / "log" / "wide_budget.csv", index=False)
    return json.loads((project / "log" / "results.json").read_text())


@pytest.mark.parametrize("section", ["test", "best", "grid", "final_training", "notebook_wall_time_s"])
def test_results_missing_a_section_the_readme_shows_are_refused_naming_it(project, capsys, section):
    results = json.loads((project / "log" / "results.json").read_text())
    del results[section]
    (project / "log" / "results.json").write_text(json.dumps(results))
    err = _report_fails(project, capsys, str(project / "log" / "results.json"), repr(section), "make run",
                        "git checkout")
    assert "Traceback" not in err


@pytest.mark.parametrize("change, where", [
    (lambda r: r["test"].update(accuracy="0.8934"), "test.accuracy"),
    (lambda r: r["test"].update(ci=[0.88]), "test.ci"),
    (lambda r: r.update(best=[784, 10]), "best"),
    (lambda r: r["best"].update(layers="784-256-128-10"), "best.layers"),
    (lambda r: r["grid"].update(runs=0), "grid.runs"),
    (lambda r: r["grid"].update(runs=True), "grid.runs"),
    (lambda r: r.update(notebook_wall_time_s=None), "notebook_wall_time_s"),
    (lambda r: r.update(quick="false"), "quick"),
    (lambda r: r["seeds"]["table"][2].pop("test_acc"), "seeds.table[2].test_acc"),
    (lambda r: r["beyond"]["mcnemar"][0].update(significant="yes"), "beyond.mcnemar[0].significant"),
    (lambda r: r["lr_followup"]["verdict"].update(diverged_lrs=0.5), "lr_followup.verdict.diverged_lrs"),
    (lambda r: r["halving"]["settings"].pop("lr"), "halving.settings.lr"),
])
def test_results_of_the_wrong_types_are_refused_naming_the_value(project, capsys, change, where):
    results = _complete_results(project)
    assert report.main(["--root", str(project)]) == 0
    change(results)
    (project / "log" / "results.json").write_text(json.dumps(results))
    err = _report_fails(project, capsys, str(project / "log" / "results.json"), "make run")
    assert f"({where} " in err


@pytest.mark.parametrize("content, message", [
    (lambda text: text[: len(text) // 2], "not valid JSON"),
    (lambda text: "", "not valid JSON"),
    (lambda text: "[1, 2, 3]", "should be a JSON object"),
    (lambda text: '"results"', "should be a JSON object"),
])
def test_results_that_are_not_json_or_not_an_object_are_refused(project, capsys, content, message):
    path = project / "log" / "results.json"
    path.write_text(content(path.read_text()))
    _report_fails(project, capsys, str(path), message, "make run")


def test_no_change_to_the_results_ends_in_a_traceback(project, monkeypatch):
    """Every value of a complete results.json, removed or replaced by text: the report writes the README or exits
    with status 2 and a sentence naming the file, never with an exception (the README's own markers aside)."""
    complete = _complete_results(project)
    path = project / "log" / "results.json"
    grid_log = grid.read_log(project / "log" / "grid_search.csv")  # read once, not at each of 300 reports
    budget_log = report.budget.read_budget_log(project / "log" / "wide_budget.csv")
    monkeypatch.setattr(grid, "read_log", lambda _: grid_log.copy())
    monkeypatch.setattr(report.budget, "read_budget_log", lambda _: budget_log.copy())

    def places(value, at=()):
        if isinstance(value, dict):
            for key, inner in value.items():
                yield (*at, key)
                yield from places(inner, (*at, key))
        elif isinstance(value, list) and value:
            yield (*at, 0)
            yield from places(value[0], (*at, 0))

    refused = 0
    for place in places(complete):
        for change in ("remove", "text"):
            results = json.loads(json.dumps(complete))
            *parent, last = place
            holder = results
            for step in parent:
                holder = holder[step]
            if change == "remove":
                del holder[last]
            else:
                holder[last] = "not what was written"
            path.write_text(json.dumps(results))
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr):
                status = report.main(["--root", str(project)])
            assert status in (0, 2), place
            if status == 2:
                refused += 1
                assert stderr.getvalue().count("\n") == 1 and str(path) in stderr.getvalue(), (place, stderr.getvalue())
    assert refused > 0


def test_a_part_the_shape_does_not_describe_still_ends_in_a_sentence(project, capsys, monkeypatch):
    """The shape check describes what render reads; should it miss something, render's error names the file."""
    monkeypatch.setattr(results_shape, "RESULTS_SHAPE", {})
    results = json.loads((project / "log" / "results.json").read_text())
    del results["final_training"]
    (project / "log" / "results.json").write_text(json.dumps(results))
    err = _report_fails(project, capsys, str(project / "log" / "results.json"), "KeyError", "'final_training'")
    assert "make run" in err


@pytest.mark.parametrize("content", ["", "layers,lr\n784-10,abc\n", "layers,lr,L2_lambda\n\"784-10,0.1\n"])
def test_a_grid_log_that_cannot_be_read_is_named(project, capsys, content):
    (project / "log" / "grid_search.csv").write_text(content)
    _report_fails(project, capsys, str(project / "log" / "grid_search.csv"))


def test_a_budget_log_that_cannot_be_read_is_named(project, capsys):
    _complete_results(project)
    budget_log = project / "log" / "wide_budget.csv"
    budget_log.write_text(budget_log.read_text().splitlines()[0] + "\n")  # the header alone: no budget to show
    _report_fails(project, capsys, str(budget_log), "make budget")
    budget_log.write_text("")
    _report_fails(project, capsys, str(budget_log), "make budget")


def test_a_benchmark_file_that_cannot_be_read_is_named(project, capsys):
    (project / "bench").mkdir()
    (project / "bench" / "results.json").write_text('{"contenders": {"numpy MLP": {"seconds_per_epoch": 1.2')
    _report_fails(project, capsys, str(project / "bench" / "results.json"), "not valid JSON", "make bench")
    (project / "bench" / "results.json").unlink()
    (project / "bench" / "grid_results.json").write_text(json.dumps({"runs": 48}))  # JSON, without the grid's times
    _report_fails(project, capsys, str(project / "bench"), "KeyError", "make bench")


def test_the_command_exits_with_status_2_and_no_traceback(project):
    path = project / "log" / "results.json"
    path.write_text(path.read_text()[:-10])
    done = subprocess.run([sys.executable, "-m", "study.report", "--root", str(project)], capture_output=True,
                          text=True, cwd=Path(report.__file__).resolve().parent.parent, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and str(path) in done.stderr and "not valid JSON" in done.stderr
    assert (project / "README.md").read_text() == README


def test_the_readme_says_how_long_run_all_took_and_refuses_a_record_it_cannot_read(project):
    (project / "log" / "run_all.json").write_text(json.dumps(
        {"wall_time_s": 74.0, "runs_trained": 0, "changed_files": 0, "differing_cells": 0}))
    block = _block(report.build(project))
    assert "fresh clone took **74 s** (`make run-all`)" in block
    assert "trained nothing, changed no tracked file and printed the committed numbers" in block
    (project / "log" / "run_all.json").write_text(json.dumps({"wall_time_s": 74.0}))
    with pytest.raises(report.ReportError, match=r"run_all\.json is not a record of Run All"):
        report.build(project)


def test_a_number_moved_in_its_last_bits_is_the_same_measurement_and_a_moved_digit_is_not():
    loss = 0.3130633164051429
    assert report.measured_numbers({"test": {"loss": loss}}) == \
        report.measured_numbers({"test": {"loss": loss * (1 + 3e-16)}})
    assert report.measured_numbers({"test": {"loss": loss}}) != \
        report.measured_numbers({"test": {"loss": loss + 1e-9}})


def _honest_parts():
    """What the notebooks of the issue "Honest numbers, round three" recorded besides the rest: the shift and the drop
    taken apart (retired since), section 7's candidates, the ablation and the budget rule, made by their own
    functions."""
    from study import budget, shift

    shift_table = pd.DataFrame({"seed": [0, 1], "val_acc": [0.85, 0.86], "test_acc": [0.845, 0.85],
                                "gap": [0.005, 0.01], "val_correct": [5100, 5160], "val_images": [6000, 6000],
                                "test_correct": [8450, 8500], "test_images": [10000, 10000]})
    history = pd.DataFrame({"epoch": [1, 1, 2, 2], "val_acc": [0.88, 0.90, 0.89, 0.89]})
    drop = shift.decompose_drop(0.9022, 0.8935, [history, history], 0.0075, seed_test_accs=[0.892, 0.891])
    candidates = pd.DataFrame([{"name": "adam_lr0.001", "settings": "784-256-128-10, adam, lr 0.001", "lr": 1e-3,
                                "best_val_acc": 0.9057, "best_val_loss": 0.33, "best_iteration": 100,
                                "diverged": False, "train_time_s": 70.0, "epochs": 40, "chosen": "(b) Adam"},
                               {"name": "adam_lr0.3", "settings": "784-256-128-10, adam, lr 0.3", "lr": 0.3,
                                "best_val_acc": float("nan"), "best_val_loss": float("nan"), "best_iteration": 0,
                                "diverged": True, "train_time_s": 1.0, "epochs": 1, "chosen": ""}])
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 1000)
    predictions = {name: np.where(rng.random(1000) < acc, y, (y + 1) % 10)
                   for name, acc in (("seed", 0.89), ("(c)", 0.91), ("(c1)", 0.90), ("(c2)", 0.89))}
    from study import beyond
    ablation = {"table": [{"model": name, "settings": "s", "val_accuracy": 0.9, "test_accuracy": 0.9,
                           "test_ci_low": 0.88, "test_ci_high": 0.92, "test_loss": 0.3, "epochs": 40,
                           "train_time_s": 100.0} for name in ("(c1)", "(c2)")],
                "mcnemar": beyond.mcnemar_against(y, predictions, ["seed", "(c)"])}
    runs_table = pd.DataFrame([{"max_epoch": epochs, "seed": seed, "key": "k", "best_val_acc": acc,
                                "best_val_loss": 0.3, "best_iteration": 1, "train_time_s": 1.0, "diverged": False,
                                "val_images": 6000}
                               for epochs, seed, acc in ((30, 0, 0.90), (30, 1, 0.901), (40, 0, 0.91), (40, 1, 0.912))])
    return {"shift": {"table": shift_table, "summary": shift.shift_summary(shift_table)}, "drop": drop,
            "candidates": candidates, "ablation": ablation, "budget_rule": budget.budget_rule(runs_table)}


def test_both_parts_record_the_honest_numbers_in_a_shape_the_report_reads(project):
    parts = _honest_parts()
    results = _uncertainty_results()
    more = {**_measured(_log()),
            **_second_part(results["beyond"]["table"], beyond_test=(0.9, 0.33, 10000),
                           candidates=parts["candidates"], ablation=parts["ablation"],
                           budget_rule=parts["budget_rule"]),
            "shift": parts["shift"], "drop": parts["drop"]}  # as the first notebook recorded them, before they retired
    assert {"candidates", "ablation", "budget_rule"} <= set(more)
    assert more["shift"]["summary"]["mean_gap"] == pytest.approx(0.0075)
    assert more["shift"]["summary"]["val_higher"] == 2
    mcnemar = more["ablation"]["mcnemar"]  # the ablation against each reference, the references not each other
    assert mcnemar["reference"].tolist() == ["seed", "seed", "(c)", "(c)"]
    assert mcnemar["model"].tolist() == ["(c1)", "(c2)", "(c1)", "(c2)"]
    written = report.write_results(project / "log" / "results.json", more)
    assert results_shape.shape_problem(written) is None
    assert written["budget_rule"]["chosen"] == 40 and written["budget_rule"]["table"][0]["seeds"] == 2
    assert written["candidates"][1]["best_val_acc"] is None  # a diverged candidate's NaN is null
    assert [row["part"] for row in written["drop"]][:5] == ["drop from validation to test",
                                                            "best-checkpoint optimism", "selection optimism",
                                                            "validation/test shift", "residual"]
    broken = dict(written, budget_rule=dict(written["budget_rule"], margin_images="two"))
    assert results_shape.shape_problem(broken) == "budget_rule.margin_images should be a number, not \"two\""
    broken = dict(written, shift=dict(written["shift"], table=[{"seed": 0}]))
    assert results_shape.shape_problem(broken) == "shift.table[0].val_acc is missing"


def test_the_budget_paragraph_shows_each_seed_and_the_rule_on_their_means():
    from study import budget, readme

    log = pd.DataFrame([{"max_epoch": epochs, "seed": seed, "key": "k", "best_val_acc": acc, "best_val_loss": 0.3,
                         "best_iteration": 9, "train_time_s": 100.0, "diverged": False, "val_images": 6000}
                        for epochs, seed, acc in ((30, 0, 0.900), (30, 1, 0.902), (40, 0, 0.910), (40, 1, 0.908))],
                       columns=budget.LOG_COLUMNS)
    rule = budget.budget_rule(log)
    text = readme.budget_section(log)
    assert f"trains **{rule['chosen']} epochs**, the fewest whose validation accuracy, the mean of its runs with 2 " \
           f"seeds, is at least {rule['threshold']:.4f}" in text
    assert f"clears the threshold by {rule['margin_images']:.1f} validation images" in text
    assert "| 30 | 1 | 0.9020 | 0.3000 | 1.7 min |" in text


def test_results_of_an_execution_that_trained_nothing_give_no_wall_times_of_training():
    from study import readme

    results = report._json_ready(_uncertainty_results())
    results["grid"] = dict(results["grid"], trained_now=0, wall_time_s=0.2)
    text = readme.render(results, _log())
    assert "read every run of sections 3 to 8 from its records" in text
    assert "grid search 0.2 s" not in text and " instead of 0.2 s" not in text
