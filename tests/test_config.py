from pathlib import Path

import numpy as np
import pytest

from study import config, runs


def test_full_config_is_the_studys_grid_and_recipe():
    cfg = config.study_config(quick=False)
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
    assert [runs.run_name(s) for s in cfg.example_runs] == ["784-64-32-10_lr0.01_L2_lambda0.01",
                                                              "784-64-32-10_lr0.1_L2_lambda0"]


def test_quick_config_is_small_and_writes_outside_the_repo(tmp_path):
    cfg = config.study_config(quick=True, output_dir=tmp_path)
    assert cfg.quick and cfg.output_dir == tmp_path
    assert len(cfg.grid) == 8
    assert all(max(s["layers"][1:]) <= 32 for s in cfg.grid)
    assert cfg.max_epoch == 2
    assert (cfg.n_train, cfg.n_val, cfg.n_test) == (3000, 1000, 1000)
    names = {runs.run_name(s) for s in cfg.grid}
    assert len(cfg.example_runs) == 2
    assert all(runs.run_name(s) in names for s in cfg.example_runs)


def test_quick_config_without_output_dir_uses_a_new_temporary_folder():
    first, second = config.study_config(quick=True), config.study_config(quick=True)
    try:
        assert first.output_dir != second.output_dir
        for cfg in (first, second):
            assert cfg.output_dir.is_dir()
            assert config.REPO_DIR not in cfg.output_dir.parents and cfg.output_dir != config.REPO_DIR
    finally:
        first.output_dir.rmdir()
        second.output_dir.rmdir()


def test_example_runs_must_be_in_the_grid(tmp_path):
    with pytest.raises(ValueError, match="not in the grid"):
        config.StudyConfig(quick=True, output_dir=tmp_path, learning_rates=(0.1,), layer_sizes=((784, 10),),
                          l2_lambdas=(0.0,), example_runs=({"layers": (784, 10), "lr": 0.5, "L2_lambda": 0.0},),
                          max_epoch=1, print_iter=1)


def test_subsample_keeps_leading_rows(tmp_path):
    data = tuple(np.arange(n) for n in (50, 50, 20, 20, 30, 30))
    cfg = config.StudyConfig(quick=True, output_dir=tmp_path, learning_rates=(0.1,), layer_sizes=((784, 10),),
                            l2_lambdas=(0.0,), example_runs=(), max_epoch=1, print_iter=1,
                            n_train=10, n_val=100, n_test=5)
    parts = config.subsample(data, cfg)
    assert [len(p) for p in parts] == [10, 10, 20, 20, 5, 5]
    np.testing.assert_array_equal(parts[0], np.arange(10))
    full = config.subsample(data, config.study_config(quick=False))
    assert [len(p) for p in full] == [50, 50, 20, 20, 30, 30]


def test_make_grid_order_and_types():
    grid = config.make_grid([0.1, 0.01], [[784, 10], (784, 64, 10)], [0, 1e-4])
    assert len(grid) == 8
    assert grid[0] == {"layers": (784, 10), "lr": 0.1, "L2_lambda": 0.0}
    assert grid[1] == {"layers": (784, 10), "lr": 0.1, "L2_lambda": 1e-4}
    assert grid[2] == {"layers": (784, 10), "lr": 0.01, "L2_lambda": 0.0}
    assert grid[4]["layers"] == (784, 64, 10)
    assert all(isinstance(s["layers"], tuple) and isinstance(s["lr"], float) for s in grid)


def test_the_follow_up_and_the_seeds_take_the_grids_best_settings_and_recipe():
    cfg = config.study_config(quick=False)
    best = {"layers": (784, 256, 128, 10), "lr": 0.1, "L2_lambda": 0.0}
    assert cfg.followup_grid(best) == [config.settings(best["layers"], lr, 0.0) for lr in (0.2, 0.3, 0.5)]
    assert min(cfg.followup_lrs) > max(cfg.learning_rates)  # beyond the grid's largest
    seeded = cfg.seed_settings(best)
    assert [s["seed"] for s in seeded] == [1, 2, 3, 4, 5] and cfg.seed not in cfg.seeds
    for s in seeded:
        assert s == dict(cfg.model_kwargs, layers=[784, 256, 128, 10], lr=0.1, L2_lambda=0.0, seed=s["seed"])
    assert cfg.followup_log_path == cfg.log_dir / "lr_followup.csv"
    assert cfg.followup_history_dir == cfg.log_dir / "lr_followup_histories"
    assert cfg.seeds_log_path == cfg.log_dir / "seeds.csv"
    assert config.ORIGINAL_TEST_ACCURACY == 0.8932


def test_quick_config_has_few_seeds(tmp_path):
    cfg = config.study_config(quick=True, output_dir=tmp_path)
    assert len(cfg.seeds) >= 2 and len(cfg.seed_settings(cfg.grid[0])) == len(cfg.seeds)


def test_describe_place_shows_no_absolute_path(tmp_path):
    assert config.describe_place(config.REPO_DIR) == "the repository"
    assert config.describe_place(config.REPO_DIR / "data" / "fashion") == "data/fashion"
    assert config.describe_place(tmp_path) == "a folder outside the repository"
    assert config.describe_place(tmp_path, repo=tmp_path.parent) == tmp_path.name


def test_section_7s_optimizers_and_ablation_are_searched_over_rates_as_sgd_was():
    cfg = config.study_config(quick=False)
    best = {"layers": (784, 256, 128, 10), "lr": 0.1, "L2_lambda": 0.0}
    momentum, adam = cfg.beyond_candidates(best)
    assert len(momentum) >= 4 and len(adam) >= 4 and len(cfg.learning_rates) == 4
    assert {"momentum_lr0.01", "momentum_lr0.02"} <= set(momentum)  # the committed records are reused
    assert {"adam_lr0.001", "adam_lr0.0003"} <= set(adam)
    sgd, adamw = cfg.ablation_candidates(best)
    assert len(sgd) >= 3 and len(adamw) >= 3
    for name, settings in sgd.items():  # (c1): the wide network's layers and dropout, the grid's recipe and L2
        assert settings == dict(cfg.model_kwargs, layers=config.WIDE_RECIPE["layers"], dropout=0.3, L2_lambda=0.0,
                                lr=settings["lr"])
        assert name == f"wide_sgd_lr{settings['lr']:g}" and "optimizer" not in settings
    for name, settings in adamw.items():  # (c2): the seed's layers without dropout, the wide recipe's training
        assert settings == dict(cfg.wide_settings, layers=[784, 256, 128, 10], dropout=0.0, lr=settings["lr"])
        assert name == f"seed_adamw_lr{settings['lr']:g}" and settings["optimizer"] == "adam"
    quick = config.study_config(quick=True)
    assert [len(d) for d in quick.ablation_candidates(best)] == [1, 1]


def test_the_seed_runs_recorded_with_their_histories_are_section_8s_runs():
    cfg = config.study_config(quick=False)
    best = {"layers": (784, 256, 128, 10), "lr": 0.1, "L2_lambda": 0.0}
    named = cfg.seed_named_settings(best)
    assert list(named) == [f"seed{seed}" for seed in cfg.seeds]
    assert list(named.values()) == cfg.seed_settings(best)
    assert cfg.seed_records.log_path == cfg.log_dir / "seed_records.csv"
    assert cfg.seed_records.history_path("seed1") == cfg.log_dir / "seed_histories" / "seed1.csv"
    assert cfg.shift_log_path == cfg.log_dir / "shift.csv" and len(cfg.shift_seeds) >= 5
    assert len(config.study_config(quick=True).shift_seeds) < len(cfg.shift_seeds)
