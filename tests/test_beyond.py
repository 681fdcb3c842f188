import numpy as np
import pandas as pd
import pytest
from test_modules import small_problem

from modules import MLP
from study import beyond, runs, stats


def candidates():
    base = {"layers": [2, 8, 3], "max_epoch": 3, "batch_size": 10, "print_iter": 4, "seed": 0}
    return [dict(base, optimizer="momentum", lr=0.05), dict(base, optimizer="adam", lr=0.01, dropout=0.2),
            dict(base, lr=1e20)]


def test_the_best_candidate_is_chosen_on_validation_and_a_diverged_one_never():
    data = small_problem()
    models = [runs.fit(settings, *data) for settings in candidates()]
    assert models[2].diverged
    best = beyond.best_on_validation(models)
    assert best.best_val_acc == max(m.best_val_acc for m in models[:2])
    with pytest.raises(ValueError, match="every candidate diverged"):
        beyond.best_on_validation(models[2:])


def test_comparison_row_measures_the_test_set_after_the_fact():
    X_train, y_train, X_val, y_val = small_problem()
    model = runs.fit(candidates()[1], X_train, y_train, X_val, y_val)
    row = beyond.comparison_row("adam", model, X_val, y_val)
    assert row["settings"] == "2-8-3, adam, lr 0.01, step schedule, no L2, dropout 0.2"
    assert row["test_accuracy"] == model.evaluate(X_val, y_val)[0]
    assert row["val_accuracy"] == model.best_val_acc
    assert row["epochs"] == 3


def test_class_changes_lists_the_largest_gain_first():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    before = np.array([0, 1, 0, 0, 2, 2])
    after = np.array([0, 0, 1, 0, 2, 1])
    table = beyond.class_changes(y_true, before, after, ["a", "b", "c"])
    assert list(table["class"]) == ["a", "b", "c"]  # a stable sort keeps ties in class order
    np.testing.assert_allclose(table["change"], [0.5, 0.5, -0.5])


def test_class_changes_carries_mcnemars_p_value_per_class():
    y_true = np.repeat([0, 1], 20)
    before = y_true.copy()
    before[:12] = 1  # class 0: 8 of 20 right
    after = y_true.copy()  # class 0: all right; class 1 unchanged
    table = beyond.class_changes(y_true, before, after, ["a", "b"]).set_index("class")
    assert table.loc["a", "change"] == pytest.approx(0.6)
    assert table.loc["a", "p_value"] == pytest.approx(stats.mcnemar(y_true[:20], before[:20], after[:20])["p_value"])
    assert table.loc["a", "p_value"] < 0.001 and table.loc["b", "p_value"] == 1.0
    assert (table.loc["a", "after_ci_low"], table.loc["a", "after_ci_high"]) == stats.accuracy_ci(20, 20)


def test_comparison_row_carries_the_test_accuracys_interval():
    X_train, y_train, X_val, y_val = small_problem()
    model = runs.fit(candidates()[0], X_train, y_train, X_val, y_val)
    row = beyond.comparison_row("momentum", model, X_val, y_val)
    correct = round(row["test_accuracy"] * len(y_val))
    assert (row["test_ci_low"], row["test_ci_high"]) == stats.accuracy_ci(correct, len(y_val))


def test_fit_with_progress_is_the_run_runs_fit_trains(tmp_path, capsys):
    data = small_problem()
    settings = dict(candidates()[1], max_epoch=4)
    whole = runs.fit(settings, *data)
    shown = beyond.fit_with_progress(settings, *data, save_path=tmp_path / "best.npz", desc="wide")
    assert shown.epoch == 4
    pd.testing.assert_frame_equal(shown.history, whole.history)
    for name, array in whole.get_parameters().items():
        np.testing.assert_array_equal(shown.get_parameters()[name], array)
    np.testing.assert_array_equal(MLP.from_file(tmp_path / "best.npz").get_parameters()["W1"],
                                  whole.get_parameters()["W1"])
    bar = capsys.readouterr().out
    assert "wide: 100%" in bar and "4/4" in bar and "epoch" in bar


def test_fit_with_progress_resumes_from_its_checkpoint_unless_fresh(tmp_path, monkeypatch):
    data = small_problem()
    settings = dict(candidates()[1], max_epoch=4)
    checkpoint = tmp_path / "run.npz"
    first = beyond.fit_with_progress(dict(settings, max_epoch=4), *data, checkpoint_path=checkpoint, progress=False)
    epochs = []
    train = MLP.train

    def counting_train(model, *args, **kwargs):
        epochs.append(model.epoch)
        return train(model, *args, **kwargs)

    monkeypatch.setattr(MLP, "train", counting_train)
    again = beyond.fit_with_progress(settings, *data, checkpoint_path=checkpoint, progress=False)
    assert epochs == [4]  # finished: one call that trains nothing
    assert again.best_val_acc == first.best_val_acc and again.epoch == 4
    epochs.clear()
    fresh = beyond.fit_with_progress(settings, *data, checkpoint_path=checkpoint, fresh=True, progress=False)
    assert epochs == [0]  # from the start, in one run
    pd.testing.assert_frame_equal(fresh.history, first.history)
    with pytest.raises(ValueError, match="other settings"):
        beyond.fit_with_progress(dict(settings, lr=0.02), *data, checkpoint_path=checkpoint, progress=False)


def test_fit_with_progress_stops_on_divergence():
    model = beyond.fit_with_progress(candidates()[2], *small_problem(), progress=False)
    assert model.diverged and model.epoch == 1


def test_each_group_of_candidates_keeps_its_best_on_validation_and_the_table_says_which():
    data = small_problem()
    settings = candidates()
    more = dict(settings[0], lr=0.2)
    models = {"m_small": runs.fit(settings[0], *data), "m_big": runs.fit(more, *data),
              "a": runs.fit(settings[1], *data), "broken": runs.fit(settings[2], *data)}
    groups = {"(a) momentum": ["m_small", "m_big"], "(x) other": ["broken", "a"]}
    chosen = beyond.chosen_on_validation(models, groups)
    small_wins = runs.ranked(pd.DataFrame([runs.outcome(models[n]) for n in ("m_small", "m_big")])).index[0] == 0
    assert chosen == {"(a) momentum": "m_small" if small_wins else "m_big", "(x) other": "a"}  # diverged: never
    table = beyond.candidate_table(models, chosen)
    assert list(table["name"]) == list(models)
    assert table.set_index("name")["chosen"].to_dict() == {
        "m_small": "(a) momentum" if small_wins else "", "m_big": "" if small_wins else "(a) momentum",
        "a": "(x) other", "broken": ""}
    np.testing.assert_array_equal(table["best_val_acc"], [m.best_val_acc for m in models.values()])
    assert table["lr"].tolist() == [0.05, 0.2, 0.01, 1e20] and table["diverged"].tolist() == [False] * 3 + [True]
    assert "test" not in " ".join(table.columns)  # the test set chooses nothing
