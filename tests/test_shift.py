"""study.shift: the 1-nearest-neighbour validation/test gap, logged by split, and the final model's drop taken apart."""

import numpy as np
import pandas as pd
import pytest

from study import shift


def pixels(n, seed, d=30):
    return np.random.default_rng(seed).random((n, d), dtype=np.float32)


def test_the_float32_products_find_the_float64_nearest_neighbour_except_at_near_ties():
    queries, reference = pixels(300, 1, d=784), pixels(2000, 2, d=784)
    found = shift.nearest_neighbours(queries, reference)
    exact = shift.squared_distances(queries.astype(np.float64), reference.astype(np.float64))
    truth = exact.argmin(axis=1)
    gap = np.sort(exact, axis=1)[:, 1] - np.sort(exact, axis=1)[:, 0]
    disagree = found != truth
    # float32 rounds the squared norms (about 260 here) to about 3e-5: only closer pairs than that may swap
    assert not (disagree & (gap > 1e-3)).any()
    assert disagree.mean() < 0.01
    # The formula itself, against distances summed element by element.
    direct = ((queries[:5, None, :].astype(np.float64) - reference[None, :7, :]) ** 2).sum(axis=2)
    np.testing.assert_allclose(shift.squared_distances(queries[:5].astype(np.float64),
                                                       reference[:7].astype(np.float64)), direct, rtol=1e-12)


def test_chunks_change_nothing_and_an_exact_tie_goes_to_the_first_row():
    queries, reference = pixels(50, 3), pixels(400, 4)
    whole = shift.nearest_neighbours(queries, reference)
    one_row_at_a_time = shift.nearest_neighbours(queries, reference, chunk_bytes=1)
    np.testing.assert_array_equal(whole, one_row_at_a_time)
    # An exact tie needs distances without rounding: pixels in quarters, whose products and sums float32 holds
    # exactly in any order. (The same random row at two places in the reference may round differently: BLAS kernels
    # treat a block's edge rows apart, and OpenBLAS's Haswell kernels then break the tie.)
    queries, reference = (np.floor(4 * pixels(n, seed)) / 4 for n, seed in ((50, 3), (400, 4)))
    twice = np.concatenate([reference, reference])  # every row twice: the first copy wins
    np.testing.assert_array_equal(shift.nearest_neighbours(queries, twice),
                                  shift.nearest_neighbours(queries, reference))
    assert (shift.nearest_neighbours(queries, twice) < len(reference)).all()
    assert shift.nearest_neighbours(reference[7:8], reference)[0] == 7  # a row's nearest neighbour is itself


def test_mismatched_rows_are_refused():
    with pytest.raises(ValueError, match="rows of one length"):
        shift.nearest_neighbours(pixels(3, 0, d=5), pixels(3, 0, d=6))


def clusters(seed, n_train=300, n_val=60, n_test=100, test_noise=0.1, d=10):
    """A split of three well-separated classes whose test images are noisier (harder) by ``test_noise``."""
    rng = np.random.default_rng(100)  # the same classes for every seed
    centres = rng.random((3, d), dtype=np.float32)
    rng = np.random.default_rng(seed)

    def draw(n, noise):
        y = rng.integers(0, 3, n)
        return (centres[y] + rng.normal(scale=noise, size=(n, d))).astype(np.float32), y

    return (*draw(n_train, 0.15), *draw(n_val, 0.15), *draw(n_test, 0.15 + test_noise))


def test_the_shift_table_measures_each_split_once_and_reads_it_back(tmp_path, monkeypatch):
    log_path = tmp_path / "log" / "shift.csv"
    table = shift.shift_table([0, 1, 2], log_path, load=clusters)
    assert list(table["seed"]) == [0, 1, 2]
    data = clusters(1)
    expected_val = np.mean(data[1][shift.nearest_neighbours(data[2], data[0])] == data[3])
    assert table.loc[1, "val_acc"] == expected_val
    assert (table["gap"] == table["val_acc"] - table["test_acc"]).all()
    summary = shift.shift_summary(table)
    assert summary["val_higher"] == 3 and summary["mean_gap"] > 0  # the noisier test images are harder
    assert summary["mean_gap"] == pytest.approx(table["gap"].mean())

    measured = []
    real = shift.measure_split
    monkeypatch.setattr(shift, "measure_split", lambda d, c: measured.append(len(d[0])) or real(d, c))
    again = shift.shift_table([2, 0, 3], log_path, load=clusters)
    assert measured == [300]  # only the new seed
    pd.testing.assert_frame_equal(again.iloc[:2].reset_index(drop=True),
                                  table.set_index("seed").loc[[2, 0]].reset_index())
    shift.shift_table([0], log_path, load=lambda seed: clusters(seed, n_train=200))  # other data: measured again
    assert measured == [300, 200]
    shift.shift_table([0], log_path, load=clusters, fresh=True)
    assert measured == [300, 200, 300]
    log = shift.read_shift_log(log_path)
    assert len(log) == 5 and log.duplicated(["seed", "key"]).sum() == 0


def test_a_split_is_made_again_from_another_as_the_reader_makes_it():
    rng = np.random.default_rng(5)
    X_all, y_all = rng.random((50, 4), dtype=np.float32), rng.integers(0, 3, 50)
    test = (X_all[:7], y_all[:7])

    def split(seed):  # mnist_reader.load_fashion_mnist's rule on 50 rows, 10 of them validation
        order = np.random.default_rng(seed).permutation(50)
        return X_all[order[10:]], y_all[order[10:]], X_all[order[:10]], y_all[order[:10]], *test

    for seed in (1, 3):
        for made, drawn in zip(shift.resplit(split(0), seed), split(seed), strict=True):
            np.testing.assert_array_equal(made, drawn)
    assert shift.split_key(shift.resplit(split(2), 1, data_seed=2)) == shift.split_key(split(1))
    assert shift.split_key(shift.resplit(split(2), 1)) != shift.split_key(split(1))  # the wrong data_seed


def test_a_log_of_other_columns_is_refused(tmp_path):
    path = tmp_path / "shift.csv"
    path.write_text("seed,accuracy\n0,0.8\n")
    with pytest.raises(ValueError, match="not a log of the 1-nearest-neighbour shift"):
        shift.shift_table([0], path, load=clusters)


def history(val_accs, checks_per_epoch=2):
    return pd.DataFrame({"epoch": [1 + i // checks_per_epoch for i in range(len(val_accs))], "val_acc": val_accs})


def test_the_drop_is_taken_apart_into_parts_that_sum_to_it():
    seeds = [history([0.80, 0.90, 0.88, 0.86]), history([0.85, 0.92, 0.89, 0.89])]  # best 0.90, 0.92; ends 0.87, 0.89
    table = shift.decompose_drop(0.93, 0.89, seeds, shift_gap=0.006, seed_test_accs=[0.885, 0.887])
    points = dict(zip(table["part"], table["points"], strict=True))
    assert points["drop from validation to test"] == pytest.approx(4.0)
    assert points["best-checkpoint optimism"] == pytest.approx(3.0)  # (0.90-0.87 + 0.92-0.89) / 2
    assert points["selection optimism"] == pytest.approx(2.0)  # 0.93 - 0.91
    assert points["validation/test shift"] == pytest.approx(0.6)
    assert points["residual"] == pytest.approx(4.0 - 3.0 - 2.0 - 0.6)
    assert table.loc[table["level"] == "part", "points"].sum() == pytest.approx(points["drop from validation to test"])
    assert points["chosen run's test luck"] == pytest.approx(-0.4)  # 0.886 - 0.89
    assert table.loc[table["level"] == "of residual", "points"].sum() == pytest.approx(points["residual"])
    assert list(shift.decompose_drop(0.93, 0.89, seeds, 0.006)["level"]) == ["total"] + ["part"] * 4
    # Section 8's logged runs for the selection optimism, the histories for the checkpoint's alone.
    logged = shift.decompose_drop(0.93, 0.89, seeds, 0.006, seed_val_accs=[0.905, 0.915, 0.91]).set_index("part")
    assert logged.loc["selection optimism", "points"] == pytest.approx(2.0)  # 0.93 - 0.91
    logged = shift.decompose_drop(0.93, 0.89, seeds, 0.006, seed_val_accs=[0.90, 0.90]).set_index("part")
    assert logged.loc["selection optimism", "points"] == pytest.approx(3.0)
    assert logged.loc["best-checkpoint optimism", "points"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="other seeds"):
        shift.decompose_drop(0.93, 0.89, [], 0.006)


def test_the_end_of_a_run_is_the_mean_of_its_last_epochs_checks():
    assert shift.end_of_run_accuracy(history([0.5, 0.9, 0.7, 0.8, 0.6], checks_per_epoch=2)) == pytest.approx(0.6)
    assert shift.end_of_run_accuracy(history([0.5, 0.9, 0.7, 0.8], checks_per_epoch=2)) == pytest.approx(0.75)


@pytest.mark.real_data
def test_the_committed_log_measured_the_studys_data_on_each_split(fashion_mnist):
    import mnist_reader

    log = shift.read_shift_log()
    assert sorted(log["seed"]) == list(shift.SEEDS)
    for seed in (0, 4):  # two of the five splits: a few seconds each to load
        data = fashion_mnist if seed == 0 else mnist_reader.load_fashion_mnist(seed=seed)
        assert log.set_index("seed").loc[seed, "key"] == shift.split_key(data)
    measure = shift.measure_split
    try:
        shift.measure_split = lambda *args: pytest.fail("the committed log should be read, not measured")
        table = shift.shift_table(data=fashion_mnist)  # each split made from the study's, as the notebook does
    finally:
        shift.measure_split = measure
    assert (table["val_images"] == 6000).all() and (table["test_images"] == 10000).all()
    for again, loaded in zip(shift.resplit(fashion_mnist, 4), mnist_reader.load_fashion_mnist(seed=4), strict=True):
        np.testing.assert_array_equal(again, loaded)


def test_section_8s_seeds_are_recorded_with_their_histories_for_the_decomposition():
    from study import config

    cfg = config.study_config(quick=False)
    recorded = cfg.seed_records.read_log()
    assert sorted(recorded) == [f"seed{seed}" for seed in sorted(cfg.seeds)]
    for name, row in recorded.items():
        assert cfg.seed_records.weights_path(name).exists()
        history = pd.read_csv(cfg.seed_records.history_path(name))
        assert history["val_acc"].max() == row["best_val_acc"] and history["epoch"].max() == cfg.max_epoch
