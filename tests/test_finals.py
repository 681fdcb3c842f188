"""Section 9's final models (study.finals): the ensemble's members chosen on validation, soft targets, and the job
that trains the finals on every training image after the candidates."""

import numpy as np
import pandas as pd
import pytest
from test_modules import small_problem

from modules import MLP
from study import config, finals, frontier, records, runs
from study.ensemble import Ensemble


def members_of(right_on):
    """Models over 6 images of class 0: each is sure and right on the images of ``right_on``, wrong elsewhere."""
    models = {}
    for name, right in right_on.items():
        p = np.tile([0.1, 0.9], (6, 1))
        p[list(right)] = [0.9, 0.1]
        models[name] = p
    return models


def test_greedy_selection_adds_the_member_that_helps_most_and_stops_when_none_does():
    probabilities = members_of({"a": [0, 1, 2, 3], "b": [0, 1, 2, 3], "c": [0, 4, 5], "d": [1, 4, 5]})
    y_val = np.zeros(6, int)
    names, steps = finals.greedy_members(probabilities, y_val, 4)
    assert names[0] == "a"  # the best alone (4 of 6), the first of equals
    assert names[1] in ("c", "d") and len(names) == len(steps) and steps["val_acc"].is_monotonic_increasing
    assert "b" not in names  # a copy of a adds nothing
    names, _ = finals.greedy_members(probabilities, y_val, 1)
    assert names == ["a"]


def test_candidates_compared_on_validation_alone_keep_their_probabilities_and_read_them_back(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)  # 4 x 4 images, which flip averaging can mirror
    X_train, X_val = rng.random((120, 16), dtype=np.float32), rng.random((40, 16), dtype=np.float32)
    y_train, y_val = rng.integers(0, 3, 120), rng.integers(0, 3, 40)
    named = {name: {"layers": [16, 8, 3], "lr": 0.2, "max_epoch": 2, "batch_size": 20, "seed": seed}
             for name, seed in (("tested", 0), ("compared", 1))}
    store = records.Records(tmp_path / "log.csv", tmp_path / "histories", tmp_path / "weights", finished="last")
    candidates = records.fit_or_read(named, (X_train, y_train, X_val, y_val), store, progress=False)
    found = finals.candidate_probabilities(store, candidates, X_val, tested=("tested",))
    for name, model in candidates.items():
        for flip in (False, True):
            np.testing.assert_array_equal(found[flip][name],
                                          Ensemble([model], flip_average=flip).probabilities(X_val))
    assert not store.probabilities_path("tested").exists() and store.probabilities_path("compared").exists()
    monkeypatch.setattr(Ensemble, "probabilities", lambda self, X: pytest.fail("computed again"))
    again = finals.candidate_probabilities(store, {"compared": candidates["compared"]}, X_val)
    np.testing.assert_array_equal(again[True]["compared"], found[True]["compared"])
    store.probabilities_path("compared").unlink()
    store.weights_path("compared").unlink()
    with pytest.raises(records.RecordError, match="without its weights and without its validation probabilities"):
        finals.candidate_probabilities(store, {"compared": candidates["compared"]}, X_val)


def test_soft_targets_put_the_weight_on_the_label_and_soften_the_teacher():
    teacher = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    y = np.array([0, 2])
    plain = finals.soft_targets(teacher, y, temperature=1.0, weight=0.5)
    np.testing.assert_allclose(plain, 0.5 * np.eye(3)[y] + 0.5 * teacher)
    softer = finals.soft_targets(teacher, y, temperature=4.0, weight=1.0)
    np.testing.assert_allclose(softer.sum(axis=1), 1)
    assert softer[0].max() < teacher[0].max() and softer[0].min() > teacher[0].min()
    assert (softer.argmax(axis=1) == teacher.argmax(axis=1)).all()


def test_all_images_joins_training_and_validation_without_a_validation_set():
    data = (np.ones((3, 2)), np.array([0, 1, 0]), np.zeros((2, 2)), np.array([1, 1]))
    X, y, X_val, y_val = finals.all_images(data)
    assert X.shape == (5, 2) and list(y) == [0, 1, 0, 1, 1] and X_val is None and y_val is None


def test_the_job_trains_the_finals_on_every_image_after_the_candidates(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(config.tempfile, "mkdtemp", lambda prefix="": str(tmp_path))
    rng = np.random.default_rng(0)
    fake = [rng.random((n, 784)).astype(np.float32) if i % 2 == 0 else rng.integers(0, 10, n)
            for i, n in enumerate((300, 300, 100, 100, 50, 50))]
    monkeypatch.setattr(frontier.mnist_reader, "load_fashion_mnist", lambda **kwargs: tuple(fake))
    frontier.main(["--quick", "--jobs", "1"])
    log = pd.read_csv(tmp_path / "log" / "frontier.csv")
    finals_rows = log[log["name"].str.contains("_all_seed|distilled")]
    cfg = config.study_config(quick=True, output_dir=tmp_path)
    assert sum(log["name"].str.contains("_all_seed")) >= len(cfg.final_seeds)
    assert {f"distilled_T{t:g}" for t in cfg.distill_temperatures} | {"distilled_all"} <= set(log["name"])
    trained_on_all = finals_rows[~finals_rows["name"].str.startswith("distilled_T")]
    assert trained_on_all["best_val_acc"].isna().all()  # no validation set: nothing chosen on them
    student = MLP.from_file(tmp_path / "weights" / "frontier" / "distilled_all.npz", print_log=False)
    assert student.data_range is not None
    store = cfg.frontier_records
    candidates = [*cfg.frontier_candidate_settings(), *cfg.frontier_candidate_settings(cfg.frontier_round_two)]
    kept = [name for name in candidates if store.weights_path(name).exists()]
    assert len(kept) == 1  # the first round's chosen, which the study measures on the test set among its members
    assert all(store.probabilities_path(name).exists() for name in set(candidates) - set(kept))
    trained = runs.runs_started

    def teaching(taught):
        raise AssertionError("a recorded student's soft targets were made again")

    arrays = finals.Taught.arrays
    monkeypatch.setattr(finals.Taught, "arrays", teaching)  # a student read back costs no pass of its teacher
    frontier.main(["--quick", "--jobs", "1"])  # read back, every record is what it says: nothing trains again
    assert runs.runs_started == trained
    table, sentence = frontier.status(cfg, config.subsample(tuple(fake), cfg)[:4])
    assert (table["state"] == "done").all() and sentence.startswith(f"{len(table)} of {len(table)} runs done")
    monkeypatch.setattr(finals.Taught, "arrays", arrays)  # this student must make its soft targets again
    store.forget({config.student_name(cfg.distill_temperatures[0])})  # its teacher's weights are gone: refused
    with pytest.raises(SystemExit):
        frontier.main(["--quick", "--jobs", "1"])
    assert "gave way to their validation probabilities" in capsys.readouterr().err
    assert runs.runs_started == trained


def test_a_teacher_of_several_students_passes_over_their_images_once(monkeypatch):
    X, y = np.random.default_rng(0).random((4, 784), dtype=np.float32), np.array([0, 1, 2, 3])
    ensemble, passes = Ensemble([MLP([784, 8, 10], seed=0, print_log=False)]), []
    probabilities = ensemble.probabilities
    monkeypatch.setattr(ensemble, "probabilities", lambda X: passes.append(len(X)) or probabilities(X))
    teacher, data = finals.Teacher(ensemble), (X, y, X[:2], y[:2])
    made = [finals.Taught(data, teacher, ("k",), t, 0.5).arrays()[1] for t in (1.0, 2.0, 4.0)]
    assert passes == [4]
    np.testing.assert_array_equal(made[1], finals.soft_targets(probabilities(X), y, 2.0, 0.5))
    finals.Taught((X[:3], y[:3], X[:2], y[:2]), teacher, ("k",), 1.0, 0.5).arrays()  # other images: a new pass
    assert passes == [4, 3]


def test_a_students_key_names_its_teacher_not_the_last_bits_of_its_soft_targets(monkeypatch):
    X, y = np.random.default_rng(0).random((4, 784), dtype=np.float32), np.array([0, 1, 2, 3])
    teacher = Ensemble([MLP([784, 8, 10], seed=0, print_log=False)])
    settings = {"layers": [784, 8, 10], "seed": 0}
    taught = finals.Taught((X, y, X[:2], y[:2]), teacher, ("k1", "k2"), 2.0, 0.5)
    made = taught.arrays()
    np.testing.assert_array_equal(made[1], finals.soft_targets(teacher.probabilities(X), y, 2.0, 0.5))
    key = runs.run_key(settings, taught)
    probabilities = teacher.probabilities(X)
    # Another processor's kernels move the float64 products' last bits: the key stays that of the recorded run.
    monkeypatch.setattr(Ensemble, "probabilities", lambda self, X: probabilities * (1 + 1e-12 * np.arange(10)))
    assert not np.array_equal(taught.arrays()[1], made[1])
    assert runs.run_key(settings, taught) == key
    others = [finals.Taught((X, y, X[:2], y[:2]), teacher, ("k1", "k3"), 2.0, 0.5),  # another teacher
              finals.Taught((X, y, X[:2], y[:2]), teacher, ("k1", "k2"), 4.0, 0.5),
              finals.Taught((X, y, X[:2], y[:2]), teacher, ("k1", "k2"), 2.0, 0.25),
              finals.Taught((X, y[::-1].copy(), X[:2], y[:2]), teacher, ("k1", "k2"), 2.0, 0.5)]  # other labels
    assert len({key, *(runs.run_key(settings, other) for other in others)}) == 1 + len(others)
    assert runs.run_key(settings, finals.Taught((X, y, X[:2], y[:2]), teacher, ("k1", "k2"), 2, 0.5)) == key


def test_status_counts_the_finals_to_come_and_the_time_left(tmp_path, monkeypatch):
    monkeypatch.setattr(config.tempfile, "mkdtemp", lambda prefix="": str(tmp_path))
    cfg = config.study_config(quick=True)
    data = tuple(np.zeros((4, 784), np.float32) if i % 2 == 0 else np.zeros(4, int) for i in range(4))
    table, sentence = frontier.status(cfg, data)
    candidates = len(cfg.frontier_candidates) + len(cfg.frontier_round_two)
    assert (table["state"] == "to do").sum() == candidates + 1 and "finals not started" in table["run"].iloc[-1]
    assert sentence.startswith(f"0 of {candidates + 1} runs done")


def test_the_finals_are_measured_once_each_and_judged_against_their_targets():
    X_train, y_train, X_test, y_test = small_problem()
    trained = {}
    for name, seed in (("recipe_all_seed0", 0), ("recipe_all_seed1", 1), ("other_all_seed0", 2), ("student", 3)):
        trained[name] = MLP([2, 8, 3], lr=0.2, max_epoch=3, batch_size=20, print_log=False, seed=seed)
        trained[name].train(X_train, y_train, None, None)
    found = {"finals": {name: trained[name] for name in ("recipe_all_seed0", "recipe_all_seed1")},
             "student": trained["student"], "train_rows": len(X_train),
             "members": {"recipe": trained["recipe_all_seed0"], "other": trained["other_all_seed0"]}}
    found["ensemble"] = Ensemble(list(found["members"].values()))
    table, predictions = finals.on_test(found, X_test, y_test)
    assert list(table["model"]) == ["recipe_all_seed0", "recipe_all_seed1", finals.STUDENT, "ensemble"]
    assert "val_acc" not in table and (table["train_rows"] == len(X_train)).all()
    for name, model in [*found["finals"].items(), (finals.STUDENT, found["student"])]:
        row = table.set_index("model").loc[name]
        assert row["test_acc"] == model.evaluate(X_test, y_test)[0]
        assert row["ci_low"] <= row["test_acc"] <= row["ci_high"]
        np.testing.assert_array_equal(predictions[name], model.predict(X_test))
    seeds_mean = table["test_acc"].iloc[:2].mean()
    found_targets = finals.summary(table, found, targets={"single": seeds_mean, "ensemble": 1.01})
    assert found_targets["single"]["model"] == finals.STUDENT
    assert found_targets["seeds"]["n"] == 2 and found_targets["seeds"]["mean"] == seeds_mean
    assert found_targets["seeds"]["reached"] and not found_targets["ensemble"]["reached"]
    assert found_targets["ensemble"]["members"] == 2
    tests = finals.significance(y_test, predictions, predictions["recipe_all_seed1"], found)
    assert list(tests["reference"]) == [finals.WIDE] * 3 + ["recipe_all_seed0"] * 2 + ["distilled student"]
    assert list(tests["model"]) == ["recipe_all_seed0", "distilled student", "ensemble", "distilled student",
                                    "ensemble", "ensemble"]


def test_a_candidate_s_changes_are_said_in_words():
    assert frontier.describe_changes({}) == "none"
    assert frontier.describe_changes(config.FRONTIER_ROUND_TWO["shift1_flip_smoothing"]) == \
        "shifts up to 1 px, flips, label smoothing 0.1"
    anchor = frontier.describe_changes(config.FRONTIER_ROUND_TWO["anchor_recipe"])
    assert "lr x0.25 after epochs 50, 75, 88, 94" in anchor and "standardised inputs" in anchor
