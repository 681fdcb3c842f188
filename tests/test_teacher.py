"""Section 10's job in miniature (study/teacher.py): a tiny CNN teaches tiny students, every run is recorded once and
read back, the teacher's probabilities on every view are recorded and stamped, and a student's record names its
teacher, not the bits of its targets."""

import numpy as np
import pytest

from solver import views
from study import config, readme, records, report, results_shape, runs, teacher


@pytest.fixture
def quick(tmp_path, monkeypatch):
    """The quick config in ``tmp_path``, 600 / 200 images, and the quick section 9 recipe as the students' (the job
    reads section 9's choice from its records, which a quick folder does not have)."""
    cfg = config.study_config(quick=True, output_dir=tmp_path)
    rng = np.random.default_rng(0)
    X = rng.random((800, 784), dtype=np.float32)
    y = np.arange(800) % 10
    X[np.arange(800), y * 70] = 1.0  # a pixel that tells the class: something to learn in one epoch
    recipe = dict(cfg.frontier_recipe, **config.FRONTIER_ROUND_TWO["shift1_flip_smoothing"], seed=0)
    monkeypatch.setattr(teacher, "section9_choice", lambda cfg, data: runs.new_model(recipe))
    return cfg, (X[:600], y[:600], X[600:], y[600:])


def test_the_job_records_every_run_once_and_then_only_reads(quick, monkeypatch):
    cfg, data = quick
    found = teacher.train_teacher(cfg, data, progress=False)
    assert set(found["candidates"]) == set(teacher.TEACHER_CANDIDATES)
    assert found["chosen"] in found["candidates"] and (found["temperature"], found["weight"]) in teacher.QUICK["grid"]
    store = teacher.teacher_records(cfg)
    logged = store.read_log()
    assert set(logged) == {*teacher.TEACHER_CANDIDATES, teacher.TEACHER_ALL,
                           *(teacher.student_name(t, w) for t, w in teacher.QUICK["grid"]),
                           *(teacher.student_name(0, 0, seed) for seed in teacher.QUICK["seeds"])}
    kept = {path.stem for path in store.weights_dir.glob("*.npz")}
    finals = {teacher.student_name(0, 0, seed) for seed in teacher.QUICK["seeds"]}
    assert kept == {teacher.TEACHER_ALL, *finals}  # what the test set measures; the others kept probabilities
    for name in [*found["candidates"], *(teacher.student_name(t, w) for t, w in teacher.QUICK["grid"])]:
        assert store.read_probabilities(name, logged[name]["key"], ("plain",), (200, 10)) is not None
    moves, _ = views(1, True)
    for name, rows in ((found["chosen"], 600), (teacher.TEACHER_ALL, 800)):
        probabilities = np.load(store.history_dir / f"{name}.views.npz")["probabilities"]
        assert probabilities.shape == (rows, len(moves), 10) and probabilities.dtype == np.float16
        np.testing.assert_allclose(probabilities.astype(np.float64).sum(axis=2), 1, atol=1e-2)
    student = found["finals"][teacher.student_name(0, 0, 0)]
    assert type(student).__name__ == "MLP" and type(found["teacher_all"]).__name__ == "CNN"

    choices = teacher.validation_choices(found, data[3])
    assert set(choices["teacher"]["model"]) == set(found["candidates"]) - {found["chosen"]}
    assert len(choices["students"]) == len(teacher.QUICK["grid"]) - 1
    table, summary, tests = teacher.on_test(found, data[2], data[3], student, found["students"][(1.0, 0.5)])
    assert list(table["model"]) == [*found["finals"], "ensemble", "CNN teacher"]
    assert (table["ci_low"] <= table["test_acc"]).all() and (table["test_acc"] <= table["ci_high"]).all()
    assert summary["single"]["model"] == teacher.student_name(0, 0, 0) and summary["ensemble"]["target"] == 0.93
    assert set(tests["reference"]) == {"MLP-taught student (section 9)", "undistilled recipe (section 9)",
                                       "CNN teacher"}
    done, _ = teacher.status(cfg, data)
    part = report._json_ready(teacher.results(done, choices, (table, summary, tests)))
    assert results_shape.shape_problem({"teacher": part}, {"teacher?": results_shape.RESULTS_SHAPE["teacher?"]}) is None
    assert "the first student **" in readme.teacher_section(part) and "CNN teacher" in readme.teacher_section(part)
    monkeypatch.setattr(runs, "fit", lambda *args, **kwargs: pytest.fail("a recorded run trained again"))
    again = teacher.train_teacher(cfg, data, progress=False, train=False)
    assert again["chosen"] == found["chosen"]
    np.testing.assert_array_equal(again["teacher_all"].predict(data[2]), found["teacher_all"].predict(data[2]))
    table, sentence = teacher.status(cfg, data)
    assert teacher.finished(table) and sentence.startswith(f"{len(table)} of {len(table)} runs done")


def test_a_missing_record_is_not_trained_when_reading(quick):
    cfg, data = quick
    table, sentence = teacher.status(cfg, data)
    assert not teacher.finished(table) and sentence.startswith(f"0 of {len(table)} runs done")
    assert f"had 0 of {len(table)} runs recorded" in readme.teacher_section(teacher.results(table))
    with pytest.raises(FileNotFoundError, match="make teacher"):
        teacher.train_teacher(cfg, data, progress=False, train=False)


def test_view_probabilities_are_read_back_only_for_their_teacher_and_images(quick, monkeypatch):
    cfg, data = quick
    store = teacher.teacher_records(cfg)
    store.history_dir.mkdir(parents=True)
    model = runs.new_model(teacher.Plan.of(cfg, {}).candidates["cnn_shift1_flip"])
    first = teacher.view_probabilities(store, "t", "key1", model, data[0][:50], 1, True)
    assert first.shape == (50, 18, 10)
    calls = []
    monkeypatch.setattr(model, "probabilities", lambda X: calls.append(len(X)) or np.full((len(X), 10), 0.1))
    np.testing.assert_array_equal(teacher.view_probabilities(store, "t", "key1", model, data[0][:50], 1, True), first)
    assert not calls  # read from the record
    teacher.view_probabilities(store, "t", "key2", model, data[0][:50], 1, True)
    assert len(calls) == 18  # another teacher's key: computed again, view by view
    (store.history_dir / "t.views.npz").write_bytes(b"torn")
    with pytest.raises(ValueError, match=r"t\.views\.npz is not a readable record of a teacher's probabilities"):
        teacher.view_probabilities(store, "t", "key1", model, data[0][:50], 1, True)


def test_a_student_s_targets_are_soft_for_every_view_and_its_key_names_the_teacher(quick):
    _, data = quick
    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet(np.ones(10), size=(600, 18)).astype(np.float32)
    taught = teacher.ViewTaught(data, lambda: probabilities, "teacher-key", 2.0, 0.9)
    _, targets, _, _ = taught.arrays()
    assert targets.shape == (600, 18, 10)
    np.testing.assert_allclose(targets.sum(axis=2), 1, rtol=1e-5)
    assert (targets[np.arange(600), :, data[1]] >= 0.1 - 1e-6).all()  # the label's share, (1 - w), at least
    moved = teacher.ViewTaught(data, lambda: probabilities * 0.999 + 0.0001, "teacher-key", 2.0, 0.9)
    assert runs.run_key({"layers": [784, 10]}, moved) == runs.run_key({"layers": [784, 10]}, taught)
    other = teacher.ViewTaught(data, lambda: probabilities, "other-teacher", 2.0, 0.9)
    assert runs.run_key({"layers": [784, 10]}, other) != runs.run_key({"layers": [784, 10]}, taught)
    assert isinstance(records.RecordError("x"), ValueError)


def rescored(path, X):
    """The probabilities of the CNN archived at ``path``, by the README's recipe, with NumPy alone from the archive's
    arrays: what someone without this code would write to re-score the teacher."""
    arrays = dict(np.load(path))
    top, conv_number, norm_number = X.reshape(-1, 28, 28, 1).astype(np.float64), 1, 1

    def normalised(x, n):
        return (x - arrays[f"running_mean{n}"]) / np.sqrt(arrays[f"running_var{n}"] + 1e-5) * arrays[f"gamma{n}"] \
            + arrays[f"beta{n}"]

    while f"conv_W{conv_number}" in arrays:
        for _ in range(2):
            W = arrays[f"conv_W{conv_number}"]
            padded = np.pad(top, ((0, 0), (1, 1), (1, 1), (0, 0)))
            top = sum(np.einsum("nhwc,cf->nhwf", padded[:, i:i + top.shape[1], j:j + top.shape[2]], W[i, j])
                      for i in range(3) for j in range(3))
            top = np.maximum(normalised(top, norm_number), 0)
            conv_number, norm_number = conv_number + 1, norm_number + 1
        n, h, w, c = top.shape
        top = top.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
    hidden = np.maximum(normalised(top.reshape(len(top), -1) @ arrays["W1"] + arrays["b1"], norm_number), 0)
    logits = hidden @ arrays["W2"] + arrays["b2"]
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_the_readme_s_recipe_re_scores_a_teacher_from_its_archive_alone(tmp_path):
    rng = np.random.default_rng(3)
    X, y = rng.random((200, 784), dtype=np.float32), rng.integers(0, 10, 200)
    model = runs.new_model(dict(teacher.QUICK["recipe"], max_epoch=1, print_iter=2, batch_size=50))
    model.train(X, y, None, None)  # batch normalisation's running averages move off their start
    model.save_param(tmp_path / "teacher.npz")
    np.testing.assert_allclose(rescored(tmp_path / "teacher.npz", X[:20]), model.probabilities(X[:20]), atol=1e-5)
