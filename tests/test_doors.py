"""Issue 17's doors: every setting checked where it enters (its name in the message), data that is not what it claims
refused, and a training loss that explodes called a divergence."""

import json
import math
import os

import numpy as np
import pytest
from test_modules import small_problem

from doors import RANGE_SLACK
from modules import MLP
from optimizers import Adam, Momentum
from solver import DIVERGENCE_LOSS

TINY = {"layers": [2, 8, 3], "max_epoch": 2, "batch_size": 16, "print_log": False, "print_iter": 5}


# -- settings become plain Python values --------------------------------------------------------------------------

def numpy_settings():
    """Every setting as it comes back from a pandas log: NumPy scalars and arrays."""
    return {"layers": np.array([2, 8, 3]), "lr": np.float64(0.05), "max_epoch": np.int64(2),
            "batch_size": np.int64(16), "L2_lambda": np.float32(1e-3), "decay_factor": np.float64(0.9),
            "decay_steps": np.int32(4), "print_log": np.bool_(False), "print_iter": np.int64(5), "seed": np.int64(3),
            "dtype": np.dtype("float64"), "dropout": np.float32(0.25), "warmup_steps": np.int64(2),
            "patience": np.int64(4), "activation": np.str_("tanh"), "lr_schedule": np.str_("cosine"),
            "optimizer": {"name": np.str_("adam"), "beta1": np.float64(0.8), "beta2": np.float32(0.99),
                          "eps": np.float64(1e-7)}}


def plain(value):
    """Whether ``value`` is made of Python's own types only."""
    if isinstance(value, dict):
        return all(type(key) is str and plain(item) for key, item in value.items())
    if isinstance(value, list):
        return all(plain(item) for item in value)
    return value is None or type(value) in (int, float, str, bool)


def test_numpy_settings_become_plain_values_and_every_save_works(tmp_path):
    model = MLP(**numpy_settings())
    config = model.config()
    assert plain(config), config
    assert type(model.print_log) is bool and type(model.dropout) is float and type(model.patience) is int
    assert json.loads(json.dumps(config)) == config
    model.train(*small_problem(), save_path=tmp_path / "best.npz", checkpoint_path=tmp_path / "run.npz")
    assert MLP.from_file(tmp_path / "best.npz").config() == config
    assert MLP.from_checkpoint(tmp_path / "run.npz", print_log=False).config() == config


# -- each optimizer's own keys and ranges -------------------------------------------------------------------------

@pytest.mark.parametrize("spec, message", [
    ({"name": "sgd", "momentum": 0.9}, r"optimizer 'sgd' does not take 'momentum': .* are none"),
    ({"name": "adam", "momentum": 0.9}, r"optimizer 'adam' does not take 'momentum': .*\['beta1', 'beta2', 'eps'\]"),
    ({"name": "momentum", "beta1": 0.9, "nesterov": True},
     r"optimizer 'momentum' does not take 'beta1', 'nesterov': .*\['momentum'\]"),
    ({"name": "nesterov", "lr": 0.1}, r"optimizer 'nesterov' does not take 'lr'"),
    ({"momentum": 0.9}, "unknown optimizer None"),
    (5, "optimizer must be a name, a dict"),
])
def test_an_optimizer_setting_its_rule_does_not_take_is_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        MLP([2, 3], optimizer=spec)


@pytest.mark.parametrize("name, settings, message", [
    ("adam", {"beta1": 1.0}, r"beta1 must lie in \[0, 1\), got 1.0"),
    ("adam", {"beta2": 1}, r"beta2 must lie in \[0, 1\), got 1"),
    ("adam", {"beta2": -0.1}, r"beta2 must lie in \[0, 1\)"),
    ("adam", {"beta1": float("nan")}, r"beta1 must lie in \[0, 1\)"),
    ("adam", {"beta1": True}, r"beta1 must lie in \[0, 1\)"),
    ("adam", {"eps": 0.0}, "eps must be a positive number"),
    ("adam", {"eps": float("inf")}, "eps must be a positive number"),
    ("adam", {"eps": "1e-8"}, "eps must be a positive number"),
    ("momentum", {"momentum": 1.0}, r"momentum must lie in \[0, 1\), got 1.0"),
    ("nesterov", {"momentum": -0.5}, r"momentum must lie in \[0, 1\)"),
])
def test_optimizer_settings_out_of_range_are_refused_naming_them(name, settings, message):
    with pytest.raises(ValueError, match=message):
        MLP([2, 3], optimizer={"name": name, **settings})
    rule = Adam if name == "adam" else Momentum
    with pytest.raises(ValueError, match=message):
        rule(**settings)


# -- dtype, epochs, the warm-up, the output paths -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.int32, "complex128", "no such type", bool])
def test_dtypes_other_than_float32_and_float64_are_refused(dtype):
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        MLP([2, 3], dtype=dtype)


@pytest.mark.parametrize("epochs", [0, -1, 1.5, True, np.float64(2.0), "2"])
def test_epochs_must_be_a_positive_integer(epochs):
    model = MLP(**TINY)
    with pytest.raises(ValueError, match=r"epochs must be None .* or a positive integer"):
        model.train(*small_problem(), epochs=epochs)
    assert model.epoch == 0


def test_numpy_epochs_are_good_epochs():
    model = MLP(**TINY)
    model.train(*small_problem(), epochs=np.int64(1))
    assert model.epoch == 1


def test_a_warm_up_longer_than_the_run_is_refused():
    data = small_problem()  # 120 rows: 8 batches of 16 an epoch, 16 in the run
    with pytest.raises(ValueError, match=r"warmup_steps=17 is longer than the whole run \(2 epochs of 8 batches = 16"):
        MLP(**TINY, warmup_steps=17).train(*data)
    model = MLP(**TINY, warmup_steps=16)  # ends its warm-up on the last batch: allowed
    assert model.train(*data)["lr"].iloc[-1] == pytest.approx(model.lr)


def test_save_path_and_checkpoint_path_must_be_two_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = MLP(**TINY)
    with pytest.raises(ValueError, match="save_path and checkpoint_path are the same file"):
        model.train(*small_problem(), save_path="run.npz", checkpoint_path=tmp_path / "sub" / ".." / "run.npz")
    assert model.epoch == 0 and os.listdir(tmp_path) == []


# -- data that is not what it claims ------------------------------------------------------------------------------

def unscaled(X):
    """``X`` as pixels would come from ``mnist_reader.load_mnist`` before scaling: uint8 from 0 to 255."""
    return np.rint(255 * (X - X.min()) / (X.max() - X.min())).astype(np.uint8)


@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_integer_pixels_are_refused_with_a_word_to_scale_them(dtype):
    X_train, y_train, X_val, y_val = small_problem()
    model = MLP(**TINY)
    scale = "scale pixels to \\[0, 1\\] first, dividing them by 255"
    with pytest.raises(ValueError, match=f"training data holds integers .*{scale}"):
        model.train(unscaled(X_train).astype(dtype), y_train, X_val, y_val)
    with pytest.raises(ValueError, match=f"validation data holds integers .*{scale}"):
        model.train(X_train, y_train, unscaled(X_val).astype(dtype), y_val)
    with pytest.raises(ValueError, match=f"evaluation data holds integers .*{scale}"):
        model.evaluate(unscaled(X_val).astype(dtype), y_val)
    with pytest.raises(ValueError, match=f"prediction data holds integers .*{scale}"):
        model.predict(unscaled(X_val).astype(dtype))


def test_data_far_outside_the_training_range_is_refused_by_every_model_that_knows_it(tmp_path):
    X_train, y_train, X_val, y_val = small_problem()
    low, width = X_train.min(), np.ptp(X_train)
    X_train, X_val = (X_train - low) / width, (X_val - low) / width  # the training data in [0, 1], as pixels are
    model = MLP(**TINY)
    model.train(X_train, y_train, X_val, y_val, save_path=tmp_path / "best.npz", checkpoint_path=tmp_path / "run.npz")
    assert model.data_range == (float(X_train.min()), float(X_train.max())) == (0.0, 1.0)
    loaded = MLP(**TINY)
    loaded.load_model(tmp_path / "best.npz")
    models = [model, MLP.from_file(tmp_path / "best.npz"), loaded, MLP.from_checkpoint(tmp_path / "run.npz")]
    far = 255 * X_val  # pixels divided by 255 in training, not here
    for each in models:
        assert each.data_range == (0.0, 1.0)
        with pytest.raises(ValueError, match=r"evaluation data spans \[.*\], far outside the range \[0, 1\]"):
            each.evaluate(far, y_val)
        with pytest.raises(ValueError, match=r"prediction data spans .* far outside .*divided by 255"):
            each.predict(far)
        near = np.clip(X_val, 0, 1) * (1 + RANGE_SLACK) - RANGE_SLACK / 2  # [-1, 2]: within the tolerance
        each.evaluate(near, y_val)
        each.predict(near)
    with pytest.raises(ValueError, match=r"validation data spans .* far outside the range"):
        MLP(**TINY).train(X_train, y_train, far, y_val)


def test_archives_without_a_training_range_still_load_and_check_nothing(tmp_path):
    model = MLP([2, 8, 3])
    np.savez(tmp_path / "old.npz", layers=np.array([2, 8, 3]), activation=np.array("relu"),
             config=np.array(json.dumps(model.config())), **model.get_parameters())
    old = MLP.from_file(tmp_path / "old.npz")
    assert old.data_range is None
    X_val, y_val = small_problem()[2:]
    old.evaluate(1000 * X_val, y_val)


def test_a_training_loss_that_explodes_is_a_divergence(capsys):
    X_train, y_train, X_val, y_val = small_problem()
    model = MLP([2, 16, 3], lr=10.0, max_epoch=20, batch_size=10, print_iter=1, seed=0)
    history = model.train(5 * X_train, y_train, X_val, y_val)  # losses 3.5, 55, then 2693
    limit = DIVERGENCE_LOSS * math.log(3)
    assert model.diverged and history["diverged"].iloc[-1] and not history["diverged"].iloc[:-1].any()
    assert limit < history["train_loss"].iloc[-1] < math.inf  # finite: exploded, not overflowed
    assert (history["train_loss"].iloc[:-1] < limit).all()
    assert "diverged: the loss exploded" in capsys.readouterr().out
    assert all(np.all(np.isfinite(array)) for array in model.get_parameters().values())


def test_the_divergence_limit_is_on_the_mean_batch_loss():
    solver = MLP([2, 3]).solver
    limit = DIVERGENCE_LOSS * math.log(3)
    assert solver.loss_limit == limit
    assert not solver.exploded(limit * 10, 10)
    assert solver.exploded(limit * 10 * 1.001, 10)
    assert solver.exploded(math.inf, 10) and solver.exploded(math.nan, 10)
