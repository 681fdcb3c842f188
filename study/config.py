"""Configuration and small helpers of the study notebook, ``Fashion_mnist_model.ipynb``.

The notebook stays glue: it asks :func:`study_config` for the settings of a full or a quick run, and uses the
helpers here for what it computes besides training and plotting (subsampling, unit statistics, the machine
description and the ``results.json`` it writes at the end).

A full run writes into the repository (``log/``, ``weights/``, ``figures/``). A quick run (``FMNIST_QUICK=1``),
used by the tests, trains a handful of tiny models for two epochs on a subsample and writes into a temporary
folder, so it never touches the repository's results.
"""

import json
import os
import platform
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from modules import ACTIVATIONS, atomic_write
from study import beyond, grid

REPO_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class StudyConfig:
    """Everything a run of the notebook depends on besides the data."""

    quick: bool
    output_dir: Path
    learning_rates: tuple[float, ...]
    layer_sizes: tuple[tuple[int, ...], ...]
    l2_lambdas: tuple[float, ...]
    example_runs: tuple[dict, ...]
    max_epoch: int
    print_iter: int
    n_train: int | None = None  # rows kept after the split; None keeps all
    n_val: int | None = None
    n_test: int | None = None
    activation: str = "relu"
    batch_size: int = 100
    decay_factor: float = 0.95
    decay_steps: int = 500
    seed: int = 0
    split_seed: int = 0
    val_fraction: float = 0.1
    halving_factor: int = 3
    halving_min_epochs: int = 2
    momentum_lrs: tuple[float, ...] = (0.01, 0.02)  # momentum 0.9 multiplies the step by about 10
    adam_lrs: tuple[float, ...] = (1e-3, 3e-4)
    wide_recipe: dict = field(default_factory=lambda: dict(beyond.WIDE_RECIPE))
    grid: list = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "grid", grid.make_grid(self.learning_rates, self.layer_sizes, self.l2_lambdas))
        names = {grid.run_name(s) for s in self.grid}
        missing = [grid.run_name(s) for s in self.example_runs if grid.run_name(s) not in names]
        if missing:
            raise ValueError(f"example runs {missing} are not in the grid")

    @property
    def log_dir(self):
        return self.output_dir / "log"

    @property
    def weights_dir(self):
        return self.output_dir / "weights"

    @property
    def fig_dir(self):
        return self.output_dir / "figures"

    @property
    def grid_log_path(self):
        return self.log_dir / "grid_search.csv"

    @property
    def history_dir(self):
        return self.log_dir / "histories"

    @property
    def model_kwargs(self):
        """The training recipe shared by every run, as keyword arguments of ``MLP`` (all but layers, lr, L2)."""
        return {"activation": self.activation, "max_epoch": self.max_epoch, "batch_size": self.batch_size,
                "decay_factor": self.decay_factor, "decay_steps": self.decay_steps, "print_iter": self.print_iter,
                "seed": self.seed}

    @property
    def halving_kwargs(self):
        """Keyword arguments of ``halving.halving_search``: the grid's recipe, from ``halving_min_epochs`` to its
        ``max_epoch`` epochs."""
        recipe = {key: value for key, value in self.model_kwargs.items() if key != "max_epoch"}
        return dict(recipe, factor=self.halving_factor, min_epochs=self.halving_min_epochs, max_epochs=self.max_epoch)

    def beyond_candidates(self, best):
        """Section 7's candidates on the grid's best settings ``best``: the same recipe with momentum, with Adam."""
        same = dict(self.model_kwargs, layers=list(best["layers"]), L2_lambda=best["L2_lambda"])
        return ([dict(same, optimizer="momentum", lr=lr) for lr in self.momentum_lrs],
                [dict(same, optimizer="adam", lr=lr) for lr in self.adam_lrs])

    @property
    def wide_settings(self):
        """Section 7's wider network with dropout and Adam, as ``MLP`` keyword arguments."""
        return dict(self.wide_recipe, seed=self.seed, print_iter=self.print_iter)


def _settings(layers, lr, l2):
    return {"layers": tuple(layers), "lr": float(lr), "L2_lambda": float(l2)}


def study_config(quick: bool, output_dir=None) -> StudyConfig:
    """The settings of a full run, or of a quick one.

    Outputs go to ``output_dir`` if given; otherwise a full run writes into the repository and a quick run into a
    new temporary folder. The quick grid (2 learning rates x 2 tiny architectures x 2 L2 strengths) keeps the
    shape of the full one, and its two example runs are the counterparts of the full ones: the smallest
    architecture with lr 0.01 and L2 0.01, and with lr 0.1 and no L2.
    """
    if output_dir is None:
        output_dir = tempfile.mkdtemp(prefix="fmnist_quick_") if quick else REPO_DIR
    output_dir = Path(output_dir)
    if quick:
        archs = ((784, 32, 16, 10), (784, 16, 8, 10))
        return StudyConfig(
            quick=True, output_dir=output_dir, learning_rates=(0.01, 0.1), layer_sizes=archs, l2_lambdas=(0.0, 0.01),
            example_runs=(_settings(archs[-1], 0.01, 0.01), _settings(archs[-1], 0.1, 0.0)),
            max_epoch=2, print_iter=10, n_train=3000, n_val=1000, n_test=1000, halving_min_epochs=1,
            momentum_lrs=(0.05,), adam_lrs=(1e-3,),
            wide_recipe=dict(beyond.WIDE_RECIPE, layers=[784, 64, 64, 10], max_epoch=2),
        )
    archs = ((784, 256, 128, 10), (784, 128, 64, 10), (784, 64, 32, 10))
    return StudyConfig(
        quick=False, output_dir=output_dir, learning_rates=(0.005, 0.01, 0.05, 0.1), layer_sizes=archs,
        l2_lambdas=(0.0, 0.001, 0.01, 0.05),
        example_runs=(_settings(archs[-1], 0.01, 0.01), _settings(archs[-1], 0.1, 0.0)),
        max_epoch=40, print_iter=100,
    )


def subsample(data, config):
    """Keep the first ``n_train``, ``n_val`` and ``n_test`` rows of the split (all of them where ``None``).

    The training and validation rows are already in the seeded random order of the split; the test rows keep the
    file order, which mixes the classes.
    """
    X_train, y_train, X_val, y_val, X_test, y_test = data
    keep = (slice(config.n_train), slice(config.n_val), slice(config.n_test))
    return (X_train[keep[0]], y_train[keep[0]], X_val[keep[1]], y_val[keep[1]], X_test[keep[2]], y_test[keep[2]])


def logged_runs(log_path):
    """How many finished runs a grid-search log holds (0 if there is none), i.e. how many a resume skips.

    Counts complete lines after the header, so a row torn by a crash, which the grid search drops and trains
    again, is not counted.
    """
    log_path = Path(log_path)
    if not log_path.exists():
        return 0
    return max(0, log_path.read_bytes().count(b"\n") - 1)


# -- hidden units --------------------------------------------------------------------------------------------


def hidden_activations(model, X):
    """The output of every hidden layer's activation for the rows of X, as ``{"hidden layer 1": (N, units), ...}``."""
    _, outputs = model.forward(X, save_activations=True)
    hidden = {}
    for layer, output in zip(model.net, outputs, strict=True):
        if isinstance(layer, tuple(ACTIVATIONS.values())):
            hidden[f"hidden layer {len(hidden) + 1}"] = output
    return hidden


def weight_change_statistics(model, initial):
    """How far training moved each FC layer's weights from where they started, one row per layer.

    ``initial`` is the same architecture as first initialised (same seed): ``relative_change`` is
    ``||W - W0|| / ||W0||``, ``correlation`` the correlation of ``W`` with ``W0`` over all weights, and
    ``units_changed_under_10pct`` the fraction of units (columns) whose incoming weights moved by less than a tenth
    of their initial norm.
    """
    rows = []
    for i, (fc, fc0) in enumerate(zip(model.fc_layers, initial.fc_layers, strict=True), start=1):
        W, W0 = np.asarray(fc.W, dtype=np.float64), np.asarray(fc0.W, dtype=np.float64)
        unit_change = np.linalg.norm(W - W0, axis=0) / np.linalg.norm(W0, axis=0)
        rows.append({"layer": f"FC{i} {W.shape[0]}x{W.shape[1]}",
                     "relative_change": float(np.linalg.norm(W - W0) / np.linalg.norm(W0)),
                     "correlation": float(np.corrcoef(W.ravel(), W0.ravel())[0, 1]),
                     "units_changed_under_10pct": float(np.mean(unit_change < 0.1))})
    return pd.DataFrame(rows)


def class_mean_activations(activations, labels, n_classes):
    """(n_classes, units) mean activation of each unit over the samples of each class (NaN for an empty class)."""
    activations = np.asarray(activations, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.intp)
    sums = np.zeros((n_classes, activations.shape[1]))
    np.add.at(sums, labels, activations)
    counts = np.bincount(labels, minlength=n_classes)[:, None]
    return np.divide(sums, counts, out=np.full_like(sums, np.nan), where=counts > 0)


def dead_units(activations):
    """Boolean mask of the units that are zero on every sample (a ReLU unit that never fires)."""
    return ~np.any(np.asarray(activations) > 0, axis=0)


def unit_statistics(hidden):
    """One row per hidden layer: units, dead units, and the mean fraction of units active per image.

    ``hidden`` maps a layer name to its ReLU output (N, units).
    """
    rows = []
    for name, acts in hidden.items():
        dead = dead_units(acts)
        rows.append({"layer": name, "units": acts.shape[1], "dead_units": int(dead.sum()),
                     "dead_fraction": float(dead.mean()),
                     "active_per_image": float(np.mean(np.asarray(acts) > 0))})
    return pd.DataFrame(rows)


def class_activity(activations, images, labels, class_names):
    """Per class: the mean pixel value of its images, and the mean activation and active fraction of the units."""
    activations, images, labels = np.asarray(activations), np.asarray(images), np.asarray(labels)
    rows = [{"class": name, "mean_pixel": float(images[labels == c].mean()),
             "mean_activation": float(activations[labels == c].mean()),
             "active_fraction": float(np.mean(activations[labels == c] > 0))}
            for c, name in enumerate(class_names) if np.any(labels == c)]
    return pd.DataFrame(rows)


def similar_class_pairs(mean_activations, class_names, k=5):
    """The ``k`` class pairs whose mean activation patterns are closest (cosine similarity), most similar first."""
    means = np.asarray(mean_activations, dtype=np.float64)
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    unit = np.divide(means, norms, out=np.zeros_like(means), where=norms > 0)
    similarity = unit @ unit.T
    rows = [{"class_a": class_names[i], "class_b": class_names[j], "cosine_similarity": float(similarity[i, j])}
            for i, j in combinations(range(len(class_names)), 2)]
    return (pd.DataFrame(rows).sort_values("cosine_similarity", ascending=False, kind="mergesort")
            .head(k).reset_index(drop=True))


def confused_class_pairs(cm, class_names, k=5):
    """The ``k`` class pairs mistaken for each other most often (both directions summed), most first."""
    cm = np.asarray(cm)
    rows = [{"class_a": class_names[i], "class_b": class_names[j], "a_as_b": int(cm[i, j]), "b_as_a": int(cm[j, i]),
             "errors": int(cm[i, j] + cm[j, i])}
            for i, j in combinations(range(len(class_names)), 2)]
    return pd.DataFrame(rows).sort_values("errors", ascending=False, kind="mergesort").head(k).reset_index(drop=True)


def errors_within_groups(cm, groups):
    """For each named group of class indices, the misclassifications that stay inside the group.

    Returns ``{name: (errors inside the group, share of all errors)}``.
    """
    cm = np.asarray(cm)
    total = cm.sum() - np.trace(cm)
    result = {}
    for name, members in groups.items():
        block = cm[np.ix_(members, members)]
        inside = int(block.sum() - np.trace(block))
        result[name] = (inside, inside / total if total else float("nan"))
    return result


# -- results.json ------------------------------------------------------------------------------------------------


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _blas():
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:  # older NumPy has no mode="dicts"; the description is a nicety, never a failure
        return None
    return " ".join(str(blas[key]) for key in ("name", "version") if blas.get(key)) or None


def machine_info():
    """Processor, architecture, core count, Python, NumPy and BLAS of this machine, as a JSON-ready dict."""
    return {
        "processor": platform.processor() or _cpu_model() or platform.machine(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "system": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas(),
    }


def _json_ready(value):
    """NumPy scalars and arrays, tuples, Paths and DataFrames made plain JSON values; NaN becomes null."""
    if isinstance(value, pd.DataFrame):
        return [_json_ready(row) for row in value.to_dict("records")]
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_results(path, results):
    """Write ``results`` (plus the machine and a UTC timestamp) as JSON to ``path``, atomically; return it."""
    payload = _json_ready({**results, "machine": machine_info(),
                           "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
    return payload


def compare_searches(grid_log, halving_found, grid_wall_s, halving_wall_s, max_epoch):
    """The grid's best run beside successive halving's pick: settings, validation accuracy over the full
    ``max_epoch`` epochs (the grid's log has it for every setting), epochs spent and wall time."""
    picked = grid.settings_key(grid.layers_name(halving_found["settings"]["layers"]),
                                 halving_found["settings"]["lr"], halving_found["settings"]["L2_lambda"])
    keys = [grid.settings_key(*row) for row in
            grid_log[["layer_sizes", "learning_rate", "l2_lambda"]].itertuples(index=False)]
    halving_row = grid_log.iloc[keys.index(picked)]
    grid_row = grid.top_k(grid_log, k=1).iloc[0]
    return pd.DataFrame([
        {"search": "grid", "settings": grid.run_name(grid.settings_from_row(grid_row)),
         "val_accuracy": grid_row["val_accuracy"], "epochs": len(grid_log) * max_epoch, "wall_time_s": grid_wall_s},
        {"search": "successive halving", "settings": grid.run_name(halving_found["settings"]),
         "val_accuracy": halving_row["val_accuracy"], "epochs": halving_found["epochs_spent"],
         "wall_time_s": halving_wall_s},
    ])
