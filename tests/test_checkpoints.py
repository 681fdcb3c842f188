"""Checkpoints: a run that crashes resumes from its last epoch and ends exactly as it would have."""

import numpy as np
import pandas as pd
import pytest
from test_modules import small_problem

from modules import MLP
from study import runs

SETTINGS = [
    {},
    {"optimizer": "adam", "lr": 0.01, "dropout": 0.2, "lr_schedule": "cosine", "L2_lambda": 0.01},
    {"optimizer": "nesterov", "warmup_steps": 5, "L2_lambda": 0.01},
]


class Crash(Exception):
    pass


def crash_after(model, batches):
    """Make ``model`` raise in the middle of training, after ``batches`` mini-batches, as a crash would."""
    step, done = model.solver.step, []

    def failing_step(X, y):
        if len(done) == batches:
            raise Crash
        done.append(1)
        return step(X, y)

    model.solver.step = failing_step


@pytest.mark.parametrize("settings", SETTINGS)
def test_a_run_resumed_after_a_crash_equals_one_trained_at_once(settings, tmp_path):
    data = small_problem()  # 120 training rows: 8 batches of 16 per epoch
    kwargs = dict(layers=[2, 8, 3], max_epoch=6, batch_size=16, print_log=False, print_iter=5, seed=3, **settings)
    at_once = MLP(**kwargs)
    expected = at_once.train(*data)

    checkpoint = tmp_path / "run.npz"
    crashed = MLP(**kwargs)
    crashed.train(*data, epochs=2)  # a first piece, then checkpoints from the 3rd epoch on
    crash_after(crashed, batches=8 + 5)  # in the middle of the 4th epoch
    with pytest.raises(Crash):
        crashed.train(*data, checkpoint_path=checkpoint)
    resumed = MLP.from_checkpoint(checkpoint, print_log=False)
    assert resumed.epoch == 3 and resumed.iteration == 24
    history = resumed.train(*data, checkpoint_path=checkpoint)

    pd.testing.assert_frame_equal(history, expected)
    for name, array in at_once.get_parameters().items():
        np.testing.assert_array_equal(resumed.get_parameters()[name], array)
    assert (resumed.best_val_acc, resumed.best_val_loss, resumed.best_iteration) == (
        at_once.best_val_acc, at_once.best_val_loss, at_once.best_iteration)
    assert resumed.config() == at_once.config()
    assert resumed.train_time_s > crashed.train_time_s > 0


def test_resuming_a_finished_run_trains_nothing_and_gives_its_best_model(tmp_path):
    data = small_problem()
    model = MLP([2, 8, 3], max_epoch=2, batch_size=16, print_log=False, print_iter=5)
    history = model.train(*data, checkpoint_path=tmp_path / "run.npz")
    resumed = MLP.from_checkpoint(tmp_path / "run.npz", print_log=False)
    pd.testing.assert_frame_equal(resumed.train(*data), history)
    assert resumed.iteration == model.iteration
    for name, array in model.get_parameters().items():
        np.testing.assert_array_equal(resumed.get_parameters()[name], array)


def test_a_model_archive_is_not_a_checkpoint(tmp_path):
    MLP([2, 3]).save_param(tmp_path / "model.npz")
    with pytest.raises(ValueError, match=r"not a training checkpoint: it lacks \['run'\]"):
        MLP.from_checkpoint(tmp_path / "model.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable training checkpoint"):
        MLP.from_checkpoint(tmp_path / "junk.npz")


def test_a_run_refuses_to_go_on_with_other_data(tmp_path):
    X_train, y_train, X_val, y_val = small_problem()
    model = MLP([2, 8, 3], max_epoch=4, batch_size=16, print_log=False, print_iter=5)
    model.train(X_train, y_train, X_val, y_val, epochs=1, checkpoint_path=tmp_path / "run.npz")
    shuffled = np.random.default_rng(0).permutation(len(X_val))
    with pytest.raises(ValueError, match=r"trained on other data \(X_val, y_val differ"):
        model.train(X_train, y_train, X_val[shuffled], y_val[shuffled])
    resumed = MLP.from_checkpoint(tmp_path / "run.npz", print_log=False)
    with pytest.raises(ValueError, match=r"trained on other data \(X_train differ"):
        resumed.train(X_train + np.float32(0.01), y_train, X_val, y_val)
    assert resumed.epoch == 1  # nothing was trained
    resumed.train(X_train, y_train, X_val, y_val)
    assert resumed.epoch == 4


def test_a_checkpoint_of_other_data_is_refused_naming_the_checkpoint_file(tmp_path):
    """The real path: runs.fit resuming the checkpoint it is given (the frontier job's runs do)."""
    X_train, y_train, X_val, y_val = small_problem()
    settings = {"layers": [2, 8, 3], "lr": 0.1, "L2_lambda": 0.0, "max_epoch": 3, "batch_size": 50, "print_iter": 2}
    checkpoint = tmp_path / "checkpoints" / "run.npz"
    runs.new_model(settings).train(X_train, y_train, X_val, y_val, epochs=1, checkpoint_path=checkpoint)
    with pytest.raises(ValueError, match=rf"the run of the checkpoint {checkpoint} was trained on other data "
                                         rf"\(X_train, y_train differ.*delete {checkpoint} to start a new run"):
        runs.fit(settings, X_train[1:], y_train[1:], X_val, y_val, checkpoint_path=checkpoint)
