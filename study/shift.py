"""How much harder the test set is than the validation set, measured without a model, and the final model's drop
from validation to test taken apart.

The validation set is 6,000 of the 60,000 training images drawn at random (``mnist_reader.load_fashion_mnist``'s
seeded 9:1 split); the test set is the data set's own 10,000 images. A model chosen on validation loses some accuracy
on test because it was chosen (the best of many runs and the best checkpoint of each), and possibly because the test
images are harder than a random draw of the training images. The second part needs no model: the 1-nearest-neighbour
classifier (Euclidean distance on the [0, 1] pixels), which learns nothing and chooses nothing, is measured on the
validation rows and on the test images of several seeded splits, with each split's 54,000 training rows as its
reference set (:func:`shift_table`); the gap between the two accuracies, averaged over the splits, is the shift that
any classifier of these pixels can expect. It takes some seconds a split, so the table is logged
(``log/shift.csv``, a row per split keyed by the split's data) and read back. :func:`decompose_drop` then splits the
final model's drop into the optimism of its checkpoint, the optimism of its selection, this shift and what is left.

    python -m study.shift [--seeds 0 1 2 3 4] [--fresh]
"""

import argparse
import hashlib
import io
import json

import numpy as np
import pandas as pd

import mnist_reader
from fileio import atomic_write, fingerprint
from study import config

LOG_COLUMNS = ["seed", "key", "val_correct", "val_images", "test_correct", "test_images"]
LOG_PATH = config.REPO_DIR / "log" / "shift.csv"
SEEDS = (0, 1, 2, 3, 4)
METHOD = "1-nearest-neighbour, squared Euclidean distance, float32 products"  # part of each row's key
CHUNK_BYTES = 256 * 2**20  # the largest block of distances held at once (two such blocks at the peak)


def squared_distances(queries, reference, reference_sq=None):
    """``||q||^2 - 2 q.r + ||r||^2`` for every row ``q`` of ``queries`` and ``r`` of ``reference``, as one matrix
    product, in the arrays' floating type. ``reference_sq`` is the reference rows' squared norms, if already known."""
    queries, reference = np.asarray(queries), np.asarray(reference)
    if reference_sq is None:
        reference_sq = np.einsum("ij,ij->i", reference, reference)
    distances = queries @ reference.T
    distances *= -2
    distances += reference_sq
    distances += np.einsum("ij,ij->i", queries, queries)[:, None]
    return distances


def nearest_neighbours(queries, reference, chunk_bytes=CHUNK_BYTES):
    """The index of each query's nearest reference row (squared Euclidean distance; the first of equal ones).

    The queries go in chunks whose block of distances stays under ``chunk_bytes``. The query's own squared norm is
    the same for every reference row, so it is left out of the argmin: ``||r||^2 - 2 q.r`` orders the reference rows
    as the distances do, with one rounding less. In float32 two distances closer than their rounding (about 1e-5 of
    the squared norms) may swap; ``tests/test_shift.py`` checks the argmin against float64 distances."""
    queries, reference = np.asarray(queries), np.asarray(reference)
    if queries.ndim != 2 or reference.ndim != 2 or queries.shape[1] != reference.shape[1] or not len(reference):
        raise ValueError(f"need two matrices of rows of one length and a reference row at least, got "
                         f"{queries.shape} and {reference.shape}")
    reference_sq = np.einsum("ij,ij->i", reference, reference)
    rows = max(1, int(chunk_bytes // (reference.shape[0] * reference.dtype.itemsize)))
    found = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), rows):
        scores = queries[start:start + rows] @ reference.T
        scores *= -2
        scores += reference_sq
        found[start:start + rows] = scores.argmin(axis=1)
    return found


def nearest_neighbour_correct(X_reference, y_reference, X, y, chunk_bytes=CHUNK_BYTES):
    """How many rows of ``X`` the label of their nearest row of ``X_reference`` classifies right."""
    return int(np.count_nonzero(np.asarray(y_reference)[nearest_neighbours(X, X_reference, chunk_bytes)] == y))


def split_key(data):
    """A short hash of a split's six arrays (``fileio.fingerprint``) and of :data:`METHOD`: a logged row is read
    back only for the same data measured the same way."""
    described = json.dumps({"method": METHOD, "data": fingerprint(*data)}, sort_keys=True)
    return hashlib.sha256(described.encode()).hexdigest()[:16]


def measure_split(data, chunk_bytes=CHUNK_BYTES):
    """The 1-nearest-neighbour counts of one split ``(X_train, y_train, X_val, y_val, X_test, y_test)``, the
    training rows as the reference set: ``{val_correct, val_images, test_correct, test_images}``."""
    X_train, y_train, X_val, y_val, X_test, y_test = data
    return {"val_correct": nearest_neighbour_correct(X_train, y_train, X_val, y_val, chunk_bytes),
            "val_images": len(y_val),
            "test_correct": nearest_neighbour_correct(X_train, y_train, X_test, y_test, chunk_bytes),
            "test_images": len(y_test)}


def resplit(data, seed, data_seed=0):
    """The split of ``seed`` made from the split ``data`` of ``data_seed`` (both
    ``mnist_reader.load_fashion_mnist``'s), without reading the files again: its training and validation rows put
    back in the files' order (the split's rule: ``default_rng(seed).permutation`` of the rows, the first ones
    validation), then drawn again with ``seed``. Equal, array for array, to ``load_fashion_mnist(seed=seed)`` when
    ``data`` is a whole split of the reader's; of a subsample (a quick run's), a seeded split of its rows."""
    X_train, y_train, X_val, y_val, X_test, y_test = data
    n = len(X_train) + len(X_val)
    X, y = np.empty((n, X_train.shape[1]), dtype=X_train.dtype), np.empty(n, dtype=y_train.dtype)
    order = np.random.default_rng(data_seed).permutation(n)
    X[order[:len(X_val)]], y[order[:len(X_val)]] = X_val, y_val
    X[order[len(X_val):]], y[order[len(X_val):]] = X_train, y_train
    order = np.random.default_rng(seed).permutation(n)
    val, train = order[:len(X_val)], order[len(X_val):]
    return X[train], y[train], X[val], y[val], X_test, y_test


def read_shift_log(log_path=LOG_PATH):
    """The rows of a log of :func:`shift_table` (none when there is no log); ValueError if it has other columns."""
    try:
        log = pd.read_csv(log_path, dtype={"key": str})
    except FileNotFoundError:
        return pd.DataFrame(columns=LOG_COLUMNS)
    if list(log.columns) != LOG_COLUMNS:
        raise ValueError(f"{log_path} is not a log of the 1-nearest-neighbour shift: found columns "
                         f"{list(log.columns)}, expected {LOG_COLUMNS}. Move it aside to measure again.")
    return log


def _write_log(log_path, log):
    buffer = io.StringIO()
    log.to_csv(buffer, index=False)
    atomic_write(log_path, lambda f: f.write(buffer.getvalue().encode()))


def shift_table(seeds=SEEDS, log_path=LOG_PATH, fresh=False, load=None, chunk_bytes=CHUNK_BYTES, data=None,
                data_seed=0):
    """The 1-nearest-neighbour accuracy on the validation rows and on the test images of the split of each seed
    of ``seeds``, and the gap between them: a DataFrame ``seed, val_acc, test_acc, gap`` (gap = val_acc - test_acc,
    positive when the test images are the harder ones), with the counts behind them.

    ``load(seed)`` gives a split's six arrays: by default :func:`resplit` of ``data`` when given (the study's
    split, made with ``data_seed``: no file read again), else ``mnist_reader.load_fashion_mnist(seed=seed)``. A split
    whose row is in the log at ``log_path`` under its key (:func:`split_key`) is read from it; the others are
    measured and their rows written into the log (atomically, the log rewritten whole), unless ``fresh``, which
    measures every split again and replaces their rows."""
    if load is None:
        load = ((lambda seed: mnist_reader.load_fashion_mnist(seed=seed)) if data is None
                else (lambda seed: resplit(data, seed, data_seed)))
    seeds = [int(seed) for seed in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"need distinct seeds, got {seeds}")
    log = read_shift_log(log_path)
    rows = []
    for seed in seeds:
        split = load(seed)
        key = split_key(split)
        logged = log[(log["seed"] == seed) & (log["key"] == key)]
        if len(logged) and not fresh:
            rows.append(logged.iloc[-1].to_dict())
            continue
        row = {"seed": seed, "key": key, **measure_split(split, chunk_bytes)}
        log = pd.concat([log[~((log["seed"] == seed) & (log["key"] == key))], pd.DataFrame([row])],
                        ignore_index=True)[LOG_COLUMNS]
        _write_log(log_path, log)
        rows.append(row)
    table = pd.DataFrame(rows, columns=LOG_COLUMNS).drop(columns="key")
    table["val_acc"] = table["val_correct"] / table["val_images"]
    table["test_acc"] = table["test_correct"] / table["test_images"]
    table["gap"] = table["val_acc"] - table["test_acc"]
    return table[["seed", "val_acc", "test_acc", "gap", "val_correct", "val_images", "test_correct",
                  "test_images"]].astype({"seed": int}).reset_index(drop=True)


def shift_summary(table):
    """The gaps of :func:`shift_table` in a few numbers: ``{splits, mean_gap, sd_gap, min_gap, max_gap,
    val_higher}`` (``val_higher``: on how many splits validation came out higher than test)."""
    gaps = table["gap"].astype(float)
    return {"splits": len(gaps), "mean_gap": float(gaps.mean()),
            "sd_gap": float(gaps.std(ddof=1)) if len(gaps) > 1 else float("nan"),
            "min_gap": float(gaps.min()), "max_gap": float(gaps.max()), "val_higher": int((gaps > 0).sum())}


def end_of_run_accuracy(history):
    """A run's validation accuracy at its end: the mean ``val_acc`` of the checks of its last epoch (one check
    alone moves by a tenth of a point or more from one check to the next)."""
    history = pd.DataFrame(history)
    return float(history.loc[history["epoch"] == history["epoch"].max(), "val_acc"].mean())


def decompose_drop(chosen_val_acc, chosen_test_acc, seed_histories, shift_gap, seed_test_accs=None,
                   seed_val_accs=None):
    """The chosen model's drop from validation to test, ``chosen_val_acc - chosen_test_acc``, taken apart in
    points (hundredths of accuracy), as a DataFrame ``part, points, level, definition``.

    ``seed_histories`` are the histories of runs of the chosen settings with other seeds (section 8: the same
    recipe, other initial weights and batch orders, never selected), which say what the chosen run's numbers would
    be without the choices; ``shift_gap`` is the validation/test gap of a model-free classifier (the mean ``gap`` of
    :func:`shift_table`). The parts, each an estimate:

    - *best-checkpoint optimism*: the mean over the seed runs of their best validation accuracy (the maximum over
      their checks, the checkpoint a run keeps) minus their accuracy at the end of the run
      (:func:`end_of_run_accuracy`): what picking the best of some 200 noisy checks adds to a run's number;
    - *selection optimism*: the chosen run's best validation accuracy minus the seed runs' mean best validation
      accuracy (``seed_val_accs`` when given, section 8's logged runs, else the maximum of each history): what
      choosing this run (the best of the grid's 48, with seed 0) adds beyond a typical run of the same settings,
      i.e. the luck of its seed on the validation images;
    - *validation/test shift*: ``shift_gap``, the part of the gap that a classifier which neither learns nor
      chooses shows as well: how much harder the test images are than a random share of the training images;
    - *residual*: the drop minus the three, what none of them explains (the model's own generalisation from the
      training distribution to the test images beyond the nearest neighbour's, and the noise of each estimate: a
      single accuracy on 10,000 test images moves by about 0.3 points).

    The checkpoint optimism is a property of the recipe, which any runs of it with other seeds estimate; the
    selection optimism and the test luck below compare the chosen run with section 8's runs, whose numbers the
    notebook shows: pass theirs (``seed_val_accs``, ``seed_test_accs``) when the histories are of other runs of
    the same seeds (retrained on other BLAS kernels, which do not repeat a run bit for bit).

    With ``seed_test_accs`` (the seed runs' test accuracies, each measured once), the residual is shown in two
    rows of level ``"of residual"``: the seed runs' mean test accuracy minus the chosen run's (the chosen run's own
    luck on the test images, negative when it did better than a typical run) and the rest.
    """
    best = np.array([pd.DataFrame(h)["val_acc"].max() for h in seed_histories], dtype=float)
    end = np.array([end_of_run_accuracy(h) for h in seed_histories], dtype=float)
    if not len(best):
        raise ValueError("need the histories of runs of the chosen settings with other seeds")
    total = chosen_val_acc - chosen_test_acc
    checkpoint = float(np.mean(best - end))
    reference = best if seed_val_accs is None else np.asarray(seed_val_accs, dtype=float)
    selection = chosen_val_acc - float(reference.mean())
    residual = total - checkpoint - selection - shift_gap
    rows = [("drop from validation to test", total, "total",
             "the chosen run's best validation accuracy minus its test accuracy"),
            ("best-checkpoint optimism", checkpoint, "part",
             f"mean over {len(best)} seed runs of (best validation accuracy - mean validation accuracy of the last "
             "epoch's checks)"),
            ("selection optimism", selection, "part",
             f"the chosen run's best validation accuracy - the mean best validation accuracy of {len(reference)} "
             "seed runs"),
            ("validation/test shift", float(shift_gap), "part",
             "1-nearest-neighbour accuracy on validation - on test, mean over seeded splits"),
            ("residual", residual, "part", "the drop minus the three parts above")]
    if seed_test_accs is not None:
        luck = float(np.mean(seed_test_accs)) - chosen_test_acc
        rows += [("chosen run's test luck", luck, "of residual",
                  "the seed runs' mean test accuracy - the chosen run's test accuracy"),
                 ("rest of the residual", residual - luck, "of residual", "the residual minus the test luck")]
    table = pd.DataFrame(rows, columns=["part", "points", "level", "definition"])
    table["points"] = 100 * table["points"]
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--fresh", action="store_true", help="measure every split again")
    args = parser.parse_args(argv)
    table = shift_table(args.seeds, fresh=args.fresh)
    print(table.round(4).to_string(index=False))
    summary = shift_summary(table)
    print(f"validation above test on {summary['val_higher']} of {summary['splits']} splits; mean gap "
          f"{100 * summary['mean_gap']:.2f} points (sd {100 * summary['sd_gap']:.2f})")


if __name__ == "__main__":
    main()
