"""Section 9: the frontier job in miniature (candidates chosen on validation, members, records read back) and the
ensemble of MLPs."""

import numpy as np
import pandas as pd
import pytest

from modules import MLP
from study import config, finals, frontier, readme, report, results_shape, runs
from study.ensemble import Ensemble, mirrored


@pytest.fixture(scope="module")
def images():
    """Square 'images' of two classes: a bright left half or a bright right half, with noise."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    X = rng.random((400, 28, 28)).astype(np.float32) * 0.5
    X[y == 0, :, :14] += 0.5
    X[y == 1, :, 14:] += 0.5
    X = X.reshape(400, 784)
    return X[:300], y[:300], X[300:], y[300:]


@pytest.fixture
def cfg(tmp_path):
    cfg = config.study_config(quick=True, output_dir=tmp_path)
    return cfg


def test_the_job_chooses_on_validation_records_every_run_and_reads_them_back(cfg, images):
    with pytest.raises(FileNotFoundError, match="make frontier"):
        frontier.train_frontier(cfg, images, train=False)
    started = runs.runs_started
    candidates, chosen, members = frontier.train_frontier(cfg, images, progress=False)
    assert runs.runs_started == started + len(cfg.frontier_candidates) + len(cfg.frontier_seeds)
    assert set(candidates) == set(cfg.frontier_candidates)
    assert chosen == frontier.choose(candidates)
    assert candidates[chosen].best_val_acc == max(model.best_val_acc for model in candidates.values())
    assert list(members) == [chosen, *(f"{chosen}_seed{seed}" for seed in cfg.frontier_seeds)]
    assert [model.seed for model in members.values()] == [0, *cfg.frontier_seeds]
    assert all(model.batch_norm for model in members.values())
    assert not list((cfg.log_dir / "checkpoints").glob("*.npz"))  # recorded runs leave no checkpoint behind

    again = frontier.train_frontier(cfg, images, train=False)
    assert runs.runs_started == started + len(cfg.frontier_candidates) + len(cfg.frontier_seeds)
    for name, model in again[2].items():
        np.testing.assert_array_equal(model.predict(images[2]), members[name].predict(images[2]))
        assert model.history.equals(members[name].history)
    table = frontier.choice_table(candidates, chosen)
    assert table["chosen"].sum() == 1 and set(table["changes"]) == {"none", "shifts up to 1 px, flips"}
    assert set(table["round"]) == {1}


def test_an_ensemble_averages_its_members_probabilities(images, tmp_path):
    X_train, y_train, X_val, y_val = images
    members = [MLP([784, 16, 2], seed=seed, max_epoch=2, batch_size=50, print_iter=3, print_log=False)
               for seed in (1, 2, 3)]
    for member in members:
        member.train(X_train, y_train, X_val, y_val)
    ensemble = Ensemble(members)
    expected = np.mean([member.forward(X_val.astype(np.float64)) for member in members], axis=0)
    np.testing.assert_allclose(ensemble.probabilities(X_val), expected, rtol=1e-6)
    np.testing.assert_array_equal(ensemble.predict(X_val), expected.argmax(axis=1))
    accuracy, loss = ensemble.evaluate(X_val, y_val)
    assert accuracy == np.mean(expected.argmax(axis=1) == y_val)
    assert loss == pytest.approx(-np.mean(np.log(expected[np.arange(len(y_val)), y_val])), rel=1e-6)

    paths = []
    for i, member in enumerate(members):
        member.save_param(tmp_path / f"m{i}.npz")
        paths.append(tmp_path / f"m{i}.npz")
    np.testing.assert_allclose(Ensemble.from_files(paths).probabilities(X_val), expected, rtol=1e-6)

    flipped = Ensemble(members, flip_average=True)
    both = (np.mean([m.forward(X_val) for m in members], axis=0) +
            np.mean([m.forward(mirrored(X_val, 28)) for m in members], axis=0)) / 2
    np.testing.assert_allclose(flipped.probabilities(X_val), both, rtol=1e-6)
    np.testing.assert_array_equal(mirrored(mirrored(X_val, 28), 28), X_val)


def test_members_that_do_not_fit_together_are_refused():
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([])
    with pytest.raises(ValueError, match="share their input and output sizes"):
        Ensemble([MLP([784, 10]), MLP([784, 5])])
    with pytest.raises(ValueError, match="square images"):
        Ensemble([MLP([20, 3])], flip_average=True)


@pytest.fixture(scope="module")
def frontier_runs(images, tmp_path_factory):
    """The miniature job's runs: ``(candidates, chosen, members)``."""
    cfg = config.study_config(quick=True, output_dir=tmp_path_factory.mktemp("frontier"))
    return frontier.train_frontier(cfg, images, progress=False)


def test_growing_probabilities_are_each_smaller_ensemble_s_bit_for_bit(frontier_runs, images):
    members = list(frontier_runs[2].values())
    for flip in (False, True):
        grown = Ensemble(members, flip_average=flip).growing_probabilities(images[2])
        assert grown.shape == (len(members), len(images[2]), 10)
        for k in range(1, len(members) + 1):
            smaller = Ensemble(members[:k], flip_average=flip)
            np.testing.assert_array_equal(grown[k - 1], smaller.probabilities(images[2]))


def test_the_ensemble_is_the_one_validation_ranks_first(frontier_runs, images):
    members, (_, _, X_val, y_val) = frontier_runs[2], images
    ensemble, choices = frontier.ensemble_of(members, X_val, y_val)
    assert list(zip(choices["members"], choices["flip_average"], strict=True)) == [
        (k, flip) for k in range(1, len(members) + 1) for flip in (False, True)]
    (chosen,) = choices.index[choices["chosen"]]
    ranked = runs.ranked(choices.rename(columns={"val_acc": "best_val_acc", "val_loss": "best_val_loss"})
                         .assign(diverged=False))
    assert ranked.index[0] == chosen
    assert len(ensemble.members) == choices.loc[chosen, "members"]
    assert ensemble.flip_average == choices.loc[chosen, "flip_average"]
    assert ensemble.evaluate(X_val, y_val) == (choices.loc[chosen, "val_acc"], choices.loc[chosen, "val_loss"])


def test_the_test_set_measures_each_final_model_and_the_targets_are_judged_on_it(frontier_runs, images):
    candidates, chosen, members = frontier_runs
    X_test, y_test = images[2], images[3]
    ensemble = Ensemble(list(members.values())[:2], flip_average=True)
    table, predictions = finals.measure_on_test(members, ensemble, X_test, y_test, ensemble_val_acc=0.5)
    assert list(table["model"]) == [*members, "ensemble"] and list(predictions) == [*members, "ensemble"]
    for name, model in members.items():
        np.testing.assert_array_equal(predictions[name], model.predict(X_test))
    np.testing.assert_array_equal(predictions["ensemble"], ensemble.predict(X_test))
    rows = table.set_index("model")
    assert rows.loc["ensemble", "test_acc"] == ensemble.evaluate(X_test, y_test)[0]
    assert rows.loc["ensemble", "val_acc"] == 0.5
    assert pd.isna(rows.loc["ensemble", "seed"]) and list(rows["seed"].iloc[:-1]) == [m.seed for m in members.values()]
    assert (rows["ci_low"] <= rows["test_acc"]).all() and (rows["test_acc"] <= rows["ci_high"]).all()

    single = frontier.choose(members)
    found = frontier.summary(table, single, len(ensemble.members), targets={"single": 0.0, "ensemble": 1.01})
    assert found["single"]["model"] == single and found["single"]["reached"]
    assert found["single"]["test_acc"] == rows.loc[single, "test_acc"]
    assert not found["ensemble"]["reached"] and found["ensemble"]["members"] == 2 < len(members)
    assert found["members_test"]["n"] == len(members)
    assert "it reaches the target 0" in frontier.describe_summary(found)
    assert "it falls short of the target 1.01" in frontier.describe_summary(found)

    wide = np.where(np.arange(len(y_test)) % 3 == 0, 1 - y_test, y_test)  # a model wrong on every third image
    tests = frontier.significance(y_test, predictions, wide, single)
    assert list(tests["reference"]) == [finals.WIDE, finals.WIDE, f"single MLP ({single})"]
    assert list(tests["model"]) == [f"single MLP ({single})", "ensemble", "ensemble"]

    written = report._json_ready({"frontier": frontier.results(candidates, chosen, frontier.ensemble_of(
        members, images[2], images[3])[1], table, found, tests, 12.5)})
    assert results_shape.shape_problem(written, {"frontier": results_shape.RESULTS_SHAPE["frontier?"]}) is None
    text = readme.frontier_section(written["frontier"], images=len(y_test))
    assert f"| ensemble | 0.5000 | {rows.loc['ensemble', 'test_acc']:.4f} |" in text
    assert f"The single MLP chosen on validation ({single}): **{found['single']['test_acc']:.4f} (95% CI" in text
    assert "below its target of 1.01" in text and text.count("McNemar's exact test on the images") == 2
