"""The doors: the checks that turn away, before anything trains, settings and data no run could use, each with a
message that says what is wrong and what to do. ``modules.MLP`` checks its settings here, its data before it trains
or measures, and parameters before it loads them; the ``Solver`` (``solver.py``) then trusts what came through.
"""

import math
import numbers
from pathlib import Path

import numpy as np

LR_SCHEDULES = ("step", "cosine", "milestones")
# The constructor's numeric settings and what each must be; ``check_settings`` turns them away at the door.
COUNTS = {"max_epoch": 1, "batch_size": 1, "decay_steps": 1, "print_iter": 1, "warmup_steps": 0, "seed": 0}
RATES = {"lr": (lambda v: v > 0, "a positive number"), "L2_lambda": (lambda v: v >= 0, "a number of at least 0"),
         "decay_factor": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
         "dropout": (lambda v: 0 <= v < 1, "a probability in [0, 1)"),
         "label_smoothing": (lambda v: 0 <= v < 1, "a probability in [0, 1)"),
         "weight_average": (lambda v: 0 <= v < 1, "a decay in [0, 1) (0: no averaging; 0.999, say)"),
         "input_mean": (lambda v: True, "a finite number"), "input_std": (lambda v: v > 0, "a positive number")}
DTYPES = ("float32", "float64")  # the types the compiled update steps are built for
# Data whose values reach further beyond the training data's [min, max] than RANGE_SLACK times its width is refused
# by evaluate and predict: 255 against a training range of [0, 1] is pixels left unscaled, not new images.
RANGE_SLACK = 2.0
# Parameters that are variances (batch normalisation's running averages, ``running_var1``, ...): never below 0.
VARIANCES = ("running_var",)


def check_settings(settings):
    """ValueError naming the first of the model's ``settings`` (a dict) that no run could use."""
    layers = settings["layers"]
    if not isinstance(layers, (list, tuple, np.ndarray)) or len(layers) < 2 or not all(
            is_count(size, 1) for size in layers):
        raise ValueError(f"layers must list at least two positive integer sizes, e.g. [784, 256, 10]; got {layers!r}")
    for name, minimum in COUNTS.items():
        if not is_count(settings[name], minimum):
            raise ValueError(f"{name} must be an integer of at least {minimum}, got {settings[name]!r}")
    for name in ("batch_norm", "augment_flip"):
        if not isinstance(settings[name], bool | np.bool_):
            raise ValueError(f"{name} must be True or False, got {settings[name]!r}")
    check_batch_norm_rows(settings["batch_norm"], settings["batch_size"])
    side = math.isqrt(int(layers[0]))
    if not is_count(settings["augment_shift"], 0) or settings["augment_shift"] >= side:
        raise ValueError(f"augment_shift must be a whole number of pixels from 0 to {side - 1} (the images are "
                         f"{side} pixels wide), got {settings['augment_shift']!r}")
    if (settings["augment_shift"] or settings["augment_flip"]) and side * side != layers[0]:
        raise ValueError(f"augmentation moves and mirrors square images, but {layers[0]} inputs are no square: set "
                         "augment_shift=0 and augment_flip=False")
    if settings["patience"] is not None and not is_count(settings["patience"], 1):
        raise ValueError(f"patience must be None (no early stopping) or a positive integer, "
                         f"got {settings['patience']!r}")
    epochs = settings["decay_epochs"]
    if not isinstance(epochs, (list, tuple, np.ndarray)) or not all(is_count(e, 1) for e in epochs) \
            or list(epochs) != sorted(set(epochs)):
        raise ValueError(f"decay_epochs must list increasing epochs (positive integers), e.g. [50, 75], got {epochs!r}")
    if (settings["lr_schedule"] == "milestones") != bool(len(epochs)):
        raise ValueError("decay_epochs go with lr_schedule='milestones', and that schedule needs them; got "
                         f"lr_schedule={settings['lr_schedule']!r} and decay_epochs={epochs!r}")
    if settings["lr_schedule"] not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {settings['lr_schedule']!r}: choose one of {LR_SCHEDULES}")
    for name, (in_range, what) in RATES.items():
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                or not in_range(value):
            raise ValueError(f"{name} must be {what}, got {value!r}")
    try:
        dtype = np.dtype(settings["dtype"]).name
    except (TypeError, ValueError):
        dtype = None
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {settings['dtype']!r}")


def is_count(value, minimum):
    """Whether ``value`` is an integer (Python or NumPy, not a bool) of at least ``minimum``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def check_batch_norm_rows(batch_norm, batch_size, n_train=None):
    """ValueError if batch normalisation would train on batches of one row: a ``batch_size`` of 1, or ``n_train``
    training rows, when given, of 1. A single row has no variance: the layer would output ``beta`` whatever the image,
    pass no gradient back and pull its running variance towards 0 (PyTorch refuses such a batch too)."""
    if not batch_norm:
        return
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 with batch_norm=True, got {batch_size!r}: a batch of one "
                         "row has no variance, so batch normalisation would output the same values whatever the "
                         "image and learn nothing; use a larger batch_size, or batch_norm=False")
    if n_train is not None and n_train < 2:
        raise ValueError(f"training data has {n_train} row, but batch normalisation needs at least 2 rows a batch (a "
                         "single row has no variance: every image would give the same output); train on more rows, "
                         "or use batch_norm=False")


def batches_per_epoch(model, n_train):
    """How many mini-batches an epoch of ``n_train`` rows takes: ``ceil(n_train / batch_size)``, less the trailing
    batch of a single row that a model with batch normalisation skips (see ``Solver``)."""
    full, rest = divmod(n_train, model.batch_size)
    return full + (rest > 1 or (rest == 1 and not model.batch_norm))


def check_run(model, n_train, epochs, save_path, checkpoint_path):
    """ValueError naming the first argument of ``train`` that would make a run nobody wants: ``epochs`` that is not
    a positive integer, batches of one row for batch normalisation, a warm-up longer than the whole run, the best
    weights and the checkpoint in one file."""
    if epochs is not None and not is_count(epochs, 1):
        raise ValueError(f"epochs must be None (up to max_epoch) or a positive integer of further epochs, "
                         f"got {epochs!r}")
    check_batch_norm_rows(model.batch_norm, model.batch_size, n_train)
    per_epoch = batches_per_epoch(model, n_train)
    batches = model.max_epoch * per_epoch
    if model.warmup_steps > batches:
        raise ValueError(f"warmup_steps={model.warmup_steps} is longer than the whole run ({model.max_epoch} epochs "
                         f"of {per_epoch} batches = {batches}): the learning rate would never "
                         "reach lr; use fewer warm-up steps or more epochs")
    if save_path is not None and checkpoint_path is not None and Path(save_path).resolve() == \
            Path(checkpoint_path).resolve():
        raise ValueError(f"save_path and checkpoint_path are the same file ({save_path}): the checkpoint would "
                         "overwrite the best weights; give them two names")


def check_data(X, y, model, name, trained_range=None, distributions=False):
    """``(X, y, (min, max))``: the data as the model computes with them (``model.dtype`` rows, ``intp`` labels) and
    the range of X; ValueError, naming the ``name`` set, if they cannot be rows and labels of this model (see
    ``check_rows``). With ``distributions``, ``y`` may also be target distributions (N, C), one per row (see
    ``check_distributions``)."""
    X, data_range = check_rows(X, model, name, trained_range)
    y = np.asarray(y)
    if distributions and y.ndim == 2:
        return X, check_distributions(y, len(X), model, name), data_range
    if distributions and y.ndim == 3:
        return X, check_view_targets(y, len(X), model, name), data_range
    if y.shape != (len(X),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} labels must be integers of shape ({len(X)},), one per row; got {y.dtype} {y.shape}")
    if y.min() < 0 or y.max() >= model.layers[-1]:
        raise ValueError(f"{name} labels must be classes in [0, {model.layers[-1]}), got labels from {y.min()} to "
                         f"{y.max()}")
    return X, y.astype(np.intp, copy=False), data_range


def check_distributions(targets, n_rows, model, name):
    """Target distributions (N, C) as the model computes with them (``model.dtype``); ValueError, naming the ``name``
    set, unless each row is C probabilities (finite, at least 0) that add up to 1."""
    shape = (n_rows, model.layers[-1])
    if targets.shape != shape or targets.dtype.kind != "f":
        raise ValueError(f"{name} targets must be labels ({n_rows},) or real distributions of shape {shape}, one per "
                         f"row; got {targets.dtype} {targets.shape}")
    sums = targets.sum(axis=1, dtype=np.float64)
    if not np.isfinite(sums).all() or targets.min() < 0 or np.abs(sums - 1).max() > 1e-4:
        raise ValueError(f"{name} target distributions must hold probabilities of at least 0 that add up to 1 in "
                         f"each row; got values from {targets.min()} to {targets.max()} and row sums from "
                         f"{sums.min()} to {sums.max()}")
    return targets.astype(model.dtype, copy=False)


def check_view_targets(targets, n_rows, model, name):
    """Target distributions for each view the Solver's augmentation draws of each row (N, V, C), as the model computes
    with them (see ``solver.views``); ValueError, naming the ``name`` set, unless there are as many views as the
    model's augmentation draws from and each is a distribution (``check_distributions``)."""
    n_views = (2 * model.augment_shift + 1) ** 2 * (1 + model.augment_flip)
    if n_views == 1:
        raise ValueError(f"{name} targets of shape {targets.shape} hold a distribution for each view of each row, but "
                         "this model does not augment its images (augment_shift=0, augment_flip=False): give it "
                         "targets (N, C), one per row")
    if targets.shape[:2] != (n_rows, n_views):
        raise ValueError(f"{name} targets of shape {targets.shape} hold a distribution for each of {targets.shape[1]} "
                         f"views of {targets.shape[0]} rows, but this model's augmentation (augment_shift="
                         f"{model.augment_shift}, augment_flip={model.augment_flip}) draws {n_views} views of each of "
                         f"{n_rows} rows: compute the targets for solver.views({model.augment_shift}, "
                         f"{model.augment_flip})")
    checked = check_distributions(targets.reshape(-1, targets.shape[2]), n_rows * n_views, model, name)
    return checked.reshape(targets.shape)


def check_rows(X, model, name, trained_range=None):
    """``(X, (min, max))``: ``X`` as the model computes with it, and its range; ValueError, naming the ``name`` set,
    if it holds integers (pixels not yet scaled), is empty or of the wrong shape, holds NaN or infinity, or reaches
    far beyond ``trained_range``, the (min, max) of the data the model was trained on (see ``check_range``)."""
    X = np.asarray(X)
    if X.dtype.kind in "iu":
        raise ValueError(f"{name} data holds integers ({X.dtype}, values up to {X.max() if X.size else None}): "
                         "scale pixels to [0, 1] first, dividing them by 255, as mnist_reader.load_fashion_mnist does")
    if X.dtype.kind not in "fb":
        raise ValueError(f"{name} data must be real numbers, got an array of {X.dtype}")
    X = X.astype(model.dtype, copy=False)
    if X.ndim != 2 or X.shape[1] != model.layers[0] or not len(X):
        raise ValueError(f"{name} data must have shape (N, {model.layers[0]}) with N > 0, got {X.shape}")
    # The extremes are finite exactly when every value is (min and max propagate NaN): two passes that allocate
    # nothing, where isfinite(X).all() would first make a boolean copy of the data (42 MB for the training set).
    low, high = float(X.min()), float(X.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{name} data holds NaN or infinite values (in {np.count_nonzero(~np.isfinite(X))} places): "
                         "clean or impute them before training or evaluating")
    check_range(name, (low, high), trained_range)
    return X, (low, high)


def check_range(name, data_range, trained_range):
    """ValueError if the data of ``data_range`` (its min, max) reaches further beyond ``trained_range``, that of the
    data the model was trained on, than ``RANGE_SLACK`` times its width; nothing when the latter is unknown."""
    if trained_range is None:
        return
    (low, high), (trained_low, trained_high) = data_range, trained_range
    slack = RANGE_SLACK * (trained_high - trained_low)
    if low < trained_low - slack or high > trained_high + slack:
        raise ValueError(f"{name} data spans [{low:g}, {high:g}], far outside the range [{trained_low:g}, "
                         f"{trained_high:g}] of the data the model was trained on (more than {RANGE_SLACK:g} times "
                         "its width beyond it): preprocess it as the training data was (pixels divided by 255, say)")


def check_parameters(params, own, source=None):
    """ValueError naming the first of ``params`` (a dict of arrays) that cannot replace the model's parameters
    ``own``: one missing, unexpected, of another shape, holding NaN, infinity or complex numbers, or a running
    variance of batch normalisation (``running_var1``, ...) below 0. The message begins with ``source``, the file the
    parameters come from, when it is given."""
    where = "" if source is None else f"{source}: "
    for name, array in own.items():
        if name not in params:
            raise ValueError(f"{where}parameter {name} is missing; expected keys {list(own)}")
        if np.shape(params[name]) != array.shape:
            raise ValueError(f"{where}parameter {name} has shape {np.shape(params[name])}, the model needs "
                             f"{array.shape}")
    extra = sorted(set(params) - set(own))
    if extra:
        raise ValueError(f"{where}unexpected parameters {extra}; expected keys {list(own)}")
    for name, array in params.items():
        if np.asarray(array).dtype.kind not in "fiu" or not np.isfinite(array).all():
            raise ValueError(f"{where}parameter {name} must hold finite real numbers, got {np.asarray(array).dtype} "
                             "values with NaN, infinity or imaginary parts: these weights cannot be used")
        negative = np.asarray(array) < 0 if name.rstrip("0123456789") in VARIANCES else None
        if negative is not None and negative.any():
            raise ValueError(f"{where}parameter {name} holds a negative variance ({np.count_nonzero(negative)} of "
                             f"its {negative.size} values, down to {np.min(array):g}), and no variance is below 0: "
                             "batch normalisation would take the square root of a negative number and predict class "
                             "0 for every image; these weights cannot be used")
