import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modules import MLP
from study import config as study
from study import grid as tuning


def test_full_config_is_the_studys_grid_and_recipe():
    cfg = study.study_config(quick=False)
    assert cfg.output_dir == Path(__file__).resolve().parent.parent  # the repository
    assert cfg.log_dir == cfg.output_dir / "log"
    assert cfg.weights_dir == cfg.output_dir / "weights"
    assert cfg.fig_dir == cfg.output_dir / "figures"
    assert cfg.grid_log_path == cfg.log_dir / "grid_search.csv"
    assert cfg.history_dir == cfg.log_dir / "histories"
    assert len(cfg.grid) == 48
    assert cfg.learning_rates == (0.005, 0.01, 0.05, 0.1)
    assert cfg.layer_sizes == ((784, 256, 128, 10), (784, 128, 64, 10), (784, 64, 32, 10))
    assert cfg.l2_lambdas == (0.0, 0.001, 0.01, 0.05)
    assert cfg.model_kwargs == {"activation": "relu", "max_epoch": 40, "batch_size": 100, "decay_factor": 0.95,
                                "decay_steps": 500, "print_iter": 100, "seed": 0}
    assert (cfg.n_train, cfg.n_val, cfg.n_test) == (None, None, None)
    assert [tuning.run_name(s) for s in cfg.example_runs] == ["784-64-32-10_lr0.01_l2_0.01",
                                                              "784-64-32-10_lr0.1_l2_0"]


def test_quick_config_is_small_and_writes_outside_the_repo(tmp_path):
    cfg = study.study_config(quick=True, output_dir=tmp_path)
    assert cfg.quick and cfg.output_dir == tmp_path
    assert len(cfg.grid) == 8
    assert all(max(s["layers"][1:]) <= 32 for s in cfg.grid)
    assert cfg.max_epoch == 2
    assert (cfg.n_train, cfg.n_val, cfg.n_test) == (3000, 1000, 1000)
    names = {tuning.run_name(s) for s in cfg.grid}
    assert len(cfg.example_runs) == 2
    assert all(tuning.run_name(s) in names for s in cfg.example_runs)


def test_quick_config_without_output_dir_uses_a_new_temporary_folder():
    first, second = study.study_config(quick=True), study.study_config(quick=True)
    try:
        assert first.output_dir != second.output_dir
        for cfg in (first, second):
            assert cfg.output_dir.is_dir()
            assert study.REPO_DIR not in cfg.output_dir.parents and cfg.output_dir != study.REPO_DIR
    finally:
        first.output_dir.rmdir()
        second.output_dir.rmdir()


def test_example_runs_must_be_in_the_grid(tmp_path):
    with pytest.raises(ValueError, match="not in the grid"):
        study.StudyConfig(quick=True, output_dir=tmp_path, learning_rates=(0.1,), layer_sizes=((784, 10),),
                          l2_lambdas=(0.0,), example_runs=({"layers": (784, 10), "lr": 0.5, "L2_lambda": 0.0},),
                          max_epoch=1, print_iter=1)


def test_subsample_keeps_leading_rows(tmp_path):
    data = tuple(np.arange(n) for n in (50, 50, 20, 20, 30, 30))
    cfg = study.StudyConfig(quick=True, output_dir=tmp_path, learning_rates=(0.1,), layer_sizes=((784, 10),),
                            l2_lambdas=(0.0,), example_runs=(), max_epoch=1, print_iter=1,
                            n_train=10, n_val=100, n_test=5)
    parts = study.subsample(data, cfg)
    assert [len(p) for p in parts] == [10, 10, 20, 20, 5, 5]
    np.testing.assert_array_equal(parts[0], np.arange(10))
    full = study.subsample(data, study.study_config(quick=False))
    assert [len(p) for p in full] == [50, 50, 20, 20, 30, 30]


def test_logged_runs(tmp_path):
    path = tmp_path / "grid.csv"
    assert study.logged_runs(path) == 0
    pd.DataFrame([{"layer_sizes": "784-10", "learning_rate": 0.1, "l2_lambda": 0.0, "val_accuracy": 0.8,
                   "val_loss": 0.5, "train_time_s": 1.0, "best_iteration": 3, "diverged": False}] * 3,
                 columns=tuning.LOG_COLUMNS).to_csv(path, index=False)
    assert study.logged_runs(path) == 3
    with open(path, "a") as f:
        f.write("784-10,0.1,0.0,0.5")  # a row torn by a crash
    assert study.logged_runs(path) == 3
    path.write_text("")
    assert study.logged_runs(path) == 0


def test_hidden_activations_are_the_relu_outputs():
    model = MLP([784, 6, 5, 10], seed=1)
    X = np.random.default_rng(0).random((7, 784), dtype=np.float32)
    hidden = study.hidden_activations(model, X)
    assert list(hidden) == ["hidden layer 1", "hidden layer 2"]
    fc1, fc2 = model.fc_layers[:2]
    h1 = np.maximum(X @ fc1.W + fc1.b, 0)
    np.testing.assert_allclose(hidden["hidden layer 1"], h1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hidden["hidden layer 2"], np.maximum(h1 @ fc2.W + fc2.b, 0), rtol=1e-5, atol=1e-6)


def test_hidden_activations_skip_dropout():
    model = MLP([784, 6, 10], dropout=0.5)
    assert list(study.hidden_activations(model, np.zeros((2, 784), dtype=np.float32))) == ["hidden layer 1"]


def test_weight_change_statistics():
    initial = MLP([784, 6, 5, 10], seed=3)
    model = MLP([784, 6, 5, 10], seed=3)
    model.fc_layers[0].W[:, :3] *= 1.5  # half of the units move by 50%, the rest stay
    stats = study.weight_change_statistics(model, initial)
    assert list(stats["layer"]) == ["FC1 784x6", "FC2 6x5", "FC3 5x10"]
    W0 = initial.fc_layers[0].W.astype(np.float64)
    expected = 0.5 * np.linalg.norm(W0[:, :3]) / np.linalg.norm(W0)
    assert stats.loc[0, "relative_change"] == pytest.approx(expected, rel=1e-5)
    assert stats.loc[0, "units_changed_under_10pct"] == 0.5
    assert 0 < stats.loc[0, "correlation"] < 1
    assert stats.loc[1:, "relative_change"].tolist() == [0, 0]
    assert stats.loc[1:, "correlation"].tolist() == pytest.approx([1, 1])
    assert stats.loc[1:, "units_changed_under_10pct"].tolist() == [1, 1]


def test_class_means_and_dead_units():
    acts = np.array([[0.0, 1.0, 0.0], [0.0, 3.0, 2.0], [0.0, 0.0, 4.0]])
    labels = np.array([0, 0, 2])
    means = study.class_mean_activations(acts, labels, 3)
    np.testing.assert_allclose(means[0], [0, 2, 1])
    assert np.isnan(means[1]).all()
    np.testing.assert_allclose(means[2], [0, 0, 4])
    np.testing.assert_array_equal(study.dead_units(acts), [True, False, False])
    stats = study.unit_statistics({"h1": acts, "h2": np.ones((3, 2))})
    assert list(stats["layer"]) == ["h1", "h2"]
    assert list(stats["dead_units"]) == [1, 0]
    assert stats["dead_fraction"].tolist() == pytest.approx([1 / 3, 0])
    assert stats["active_per_image"].tolist() == pytest.approx([4 / 9, 1])


def test_similar_and_confused_class_pairs():
    names = ("a", "b", "c")
    means = np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0]])
    pairs = study.similar_class_pairs(means, names, k=2)
    assert list(zip(pairs["class_a"], pairs["class_b"], strict=True)) == [("a", "b"), ("a", "c")]
    assert pairs["cosine_similarity"].iloc[0] == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    cm = np.array([[50, 1, 7], [2, 60, 0], [9, 0, 40]])
    confused = study.confused_class_pairs(cm, names, k=2)
    assert confused.to_dict("records")[0] == {"class_a": "a", "class_b": "c", "a_as_b": 7, "b_as_a": 9, "errors": 16}
    assert list(confused["errors"]) == [16, 3]


def test_errors_within_groups():
    cm = np.array([[50, 1, 7], [2, 60, 0], [9, 0, 40]])
    result = study.errors_within_groups(cm, {"ac": (0, 2), "b": (1,)})
    assert result["ac"] == (16, pytest.approx(16 / 19))
    assert result["b"] == (0, 0.0)


def test_class_activity():
    acts = np.array([[0.0, 2.0], [1.0, 1.0], [0.0, 0.0]])
    images = np.array([[0.5, 0.5], [1.0, 0.0], [0.2, 0.0]])
    table = study.class_activity(acts, images, np.array([0, 0, 1]), ("a", "b", "c"))
    assert list(table["class"]) == ["a", "b"]  # no image of c
    assert table["mean_pixel"].tolist() == pytest.approx([0.5, 0.1])
    assert table["mean_activation"].tolist() == pytest.approx([1.0, 0.0])
    assert table["active_fraction"].tolist() == pytest.approx([0.75, 0.0])


def test_machine_info():
    info = study.machine_info()
    assert info["cpu_count"] >= 1
    assert info["numpy"] == np.__version__
    assert info["processor"] and info["machine"]
    json.dumps(info)


def test_write_results_is_plain_json(tmp_path):
    path = tmp_path / "log" / "results.json"
    top = pd.DataFrame({"layer_sizes": ["784-10"], "val_accuracy": [np.float64(0.9)]})
    written = study.write_results(path, {"test": {"accuracy": np.float32(0.5), "loss": float("nan")},
                                         "layers": (784, 10), "top5": top, "path": tmp_path})
    loaded = json.loads(path.read_text())
    assert loaded == written
    assert loaded["test"] == {"accuracy": 0.5, "loss": None}
    assert loaded["layers"] == [784, 10]
    assert loaded["top5"] == [{"layer_sizes": "784-10", "val_accuracy": 0.9}]
    assert loaded["path"] == str(tmp_path)
    assert loaded["machine"]["cpu_count"] >= 1
    assert "written_at" in loaded
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


def test_compare_searches_looks_the_halving_pick_up_in_the_grid():
    log = pd.DataFrame({
        "layer_sizes": ["4-3", "4-3", "4-5-3"], "learning_rate": [0.1, 0.01, 0.1], "l2_lambda": [0.0, 0.0, 0.01],
        "val_accuracy": [0.8, 0.9, 0.85], "val_loss": [0.5, 0.3, 0.4], "train_time_s": [1.0, 1.0, 2.0],
        "best_iteration": [10, 20, 30], "diverged": [False, False, False]})
    found = {"settings": {"layers": (4, 5, 3), "lr": 0.1, "L2_lambda": 0.01}, "epochs_spent": 7}
    table = study.compare_searches(log, found, grid_wall_s=60.0, halving_wall_s=9.0, max_epoch=40)
    assert list(table["search"]) == ["grid", "successive halving"]
    assert list(table["settings"]) == ["4-3_lr0.01_l2_0", "4-5-3_lr0.1_l2_0.01"]
    assert list(table["val_accuracy"]) == [0.9, 0.85]
    assert list(table["epochs"]) == [120, 7]
    assert list(table["wall_time_s"]) == [60.0, 9.0]
