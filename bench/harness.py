"""What the benchmarks share: the data, one contender per child process, the best of interleaved repeats.

Each contender is a function ``fn(epochs) -> (seconds_per_epoch, best_val_acc)`` defined at the top level of a
benchmark script. It runs in a fresh spawned process, so that its peak resident memory is its own; contenders take
turns, and each keeps its fastest repeat: on a shared machine the minimum is the least disturbed measurement.
"""

import copy
import gc
import json
import multiprocessing
import resource
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load_data():
    """The study's split of Fashion-MNIST, or random data of the same shapes when the files are not here."""
    import mnist_reader

    try:
        X_train, y_train, X_val, y_val, _, _ = mnist_reader.load_fashion_mnist()
        return X_train, y_train, X_val, y_val, "Fashion-MNIST"
    except FileNotFoundError:
        rng = np.random.default_rng(0)
        return (rng.random((54000, 784), dtype=np.float32), rng.integers(0, 10, 54000),
                rng.random((6000, 784), dtype=np.float32), rng.integers(0, 10, 6000), "random data (no data set found)")


def warm_up(settings, X_train, y_train, X_val, y_val):
    """Train a throwaway ``MLP(**settings)`` for one epoch on the first 1,000 rows, before a contender's clock starts.

    What a process pays once, whatever the length of its runs, then falls outside the timed epochs: numba loading the
    compiled steps of the update rule (about a quarter of a second), OpenBLAS's first buffers. A short benchmark would
    otherwise charge it to its few epochs, though a run of the study spreads it over forty.
    """
    from modules import MLP

    MLP(**dict(settings, max_epoch=1, print_log=False)).train(X_train[:1000], y_train[:1000], X_val[:500], y_val[:500])
    gc.collect()  # a model and its Solver refer to each other: only the cycle collector frees the throwaway one


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed: no PyTorch reference (pip install torch==2.13.0)")
        return False
    return True


def torch_augment(images, max_shift, flip):
    """What the Solver's augmentation (``Solver.augmented``) does, in PyTorch: each 28x28 image of the batch moved
    by up to ``max_shift`` pixels (zero padding, then a crop) and, with ``flip``, mirrored with probability 1/2, in one
    gather."""
    import torch

    n, side = len(images), 28
    padded = torch.nn.functional.pad(images.view(n, side, side), (max_shift,) * 4)
    moves = torch.randint(0, 2 * max_shift + 1, (2, n))
    pixels = torch.arange(side)
    columns = torch.where(torch.rand(n)[:, None] < 0.5, pixels.flip(0), pixels) if flip else pixels[None]
    rows = (pixels + moves[0][:, None])[:, :, None]
    columns = (columns + moves[1][:, None])[:, None, :]
    return padded[torch.arange(n)[:, None, None], rows, columns].reshape(n, side * side)


def train_torch(layers, epochs, batch_size, val_every, make_optimizer, make_schedule, dropout=0.0, batch_norm=False,
                augment=None, label_smoothing=0.0):
    """The same network trained in PyTorch on the same data, the reference measured in the same run.

    He-initialised ``Linear`` layers with ReLU (with ``batch_norm``, a ``BatchNorm1d`` before each; ``Dropout`` after
    each hidden one), cross-entropy, shuffled mini-batches (``augment=(max_shift, flip)``: moved and mirrored by
    :func:`torch_augment`), the validation set evaluated every ``val_every`` batches, the loss's targets smoothed by
    ``label_smoothing``. ``make_optimizer(parameters)`` and ``make_schedule(optimizer, batches_per_epoch)`` give the
    recipe. Returns (seconds per epoch, best val accuracy).
    """
    import torch

    X_train, y_train, X_val, y_val, _ = load_data()
    torch.manual_seed(0)
    X_train, X_val = torch.from_numpy(X_train), torch.from_numpy(X_val)
    y_train, y_val = torch.from_numpy(y_train.astype(np.int64)), torch.from_numpy(y_val.astype(np.int64))
    modules = []
    for a, b in pairwise(layers):
        linear = torch.nn.Linear(a, b)
        torch.nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        torch.nn.init.zeros_(linear.bias)
        norm = [torch.nn.BatchNorm1d(b)] if batch_norm else []
        modules.append([linear, *norm, torch.nn.ReLU(), *([torch.nn.Dropout(dropout)] if dropout else [])])
    modules[-1] = modules[-1][:1]  # the output layer: its scores alone
    net = torch.nn.Sequential(*[module for layer in modules for module in layer])
    optimizer = make_optimizer(net.parameters())
    schedule = make_schedule(optimizer, -(-len(X_train) // batch_size))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    scratch = copy.deepcopy(net)  # warm-up on a copy, as warm_up does for the MLP: PyTorch's first calls set up
    scratch_optimizer = make_optimizer(scratch.parameters())
    loss_fn(scratch(X_train[:batch_size]), y_train[:batch_size]).backward()
    scratch_optimizer.step()
    best, iteration = 0.0, 0
    started = time.perf_counter()
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(X_train))
        for start in range(0, len(X_train), batch_size):
            batch = order[start:start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            inputs = X_train[batch] if augment is None else torch_augment(X_train[batch], *augment)
            loss = loss_fn(net(inputs), y_train[batch])
            loss.backward()
            optimizer.step()
            schedule.step()
            iteration += 1
            if iteration % val_every == 0:
                net.eval()
                with torch.no_grad():
                    best = max(best, (net(X_val).argmax(1) == y_val).float().mean().item())
                net.train()
    return (time.perf_counter() - started) / epochs, best


def matmul_floor(layers, batch_size, val_every, epochs, library="numpy"):
    """(seconds per epoch, NaN) of the matrix products of training ``layers`` and nothing else: each batch's
    forward products, the backward products of the weights' and the bottoms' gradients, and the validation set's
    forward products every ``val_every`` batches, in float32. No implementation on that BLAS can beat it: with
    ``library="numpy"`` NumPy's (OpenBLAS), with ``"torch"`` PyTorch's own (its MKL or oneDNN), the same loop on
    tensors, so that each framework's epoch can be put beside its own floor."""
    X_train, _, X_val, _, _ = load_data()
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((a, b), dtype=np.float32) * 0.01 for a, b in pairwise(layers)]
    if library == "torch":
        import torch

        X_train, X_val, *weights = map(torch.from_numpy, [X_train, X_val, *weights])
    started = time.perf_counter()
    for _ in range(epochs):
        for i, start in enumerate(range(0, len(X_train), batch_size), start=1):
            bottoms = [X_train[start:start + batch_size]]
            for W in weights:
                bottoms.append(bottoms[-1] @ W)
            diff = bottoms.pop()
            for depth in reversed(range(len(weights))):
                bottoms[depth].T @ diff
                if depth:
                    diff = diff @ weights[depth].T
            if i % val_every == 0:
                top = X_val
                for W in weights:
                    top = top @ W
    return (time.perf_counter() - started) / epochs, float("nan")


def peak_rss_mb():
    """This process's own peak resident memory in MB.

    Linux's ``ru_maxrss`` survives ``execve``: a spawned child starts with its parent's peak (here the parent has
    torch and the data loaded), so it cannot tell contenders apart. ``VmHWM`` belongs to the process's own address
    space; ``ru_maxrss`` is the fallback where /proc is missing.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kilobytes = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kilobytes) / 1024


def _child(fn, epochs, queue):
    seconds, accuracy = fn(epochs)
    queue.put((seconds, accuracy, peak_rss_mb()))


def measure(fn, epochs):
    """(seconds per epoch, best validation accuracy, peak RSS in MB) of ``fn(epochs)`` in a child process."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(fn, epochs, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def best_of(contenders, epochs, repeats):
    """``{name: (seconds_per_epoch, best_val_acc, peak_rss_mb)}``, the fastest of ``repeats`` interleaved runs."""
    best = {}
    for _ in range(repeats):
        for name, fn in contenders.items():
            result = measure(fn, epochs)
            best[name] = min(best.get(name, result), result, key=lambda r: r[0])
    for name, (seconds, accuracy, rss) in best.items():
        print(f"{name:>14}: {seconds:.3f} s/epoch  peak RSS {rss:.0f} MB  best val acc {accuracy:.4f}")
    return best


def run_benchmark(contenders, torch_references, epochs, repeats, output):
    """Time ``contenders`` (plus ``torch_references``, ``{name: fn}`` such as ``{"pytorch": ...}``, when torch
    imports), write the figures to ``output`` and return ``best_of``'s dict."""
    contenders = dict(contenders)
    if torch_available():
        contenders.update(torch_references)
    data = load_data()[-1]
    print(f"data: {data}; {epochs} epochs a run, best of {repeats} runs")
    best = best_of(contenders, epochs, repeats)
    write_results(output, {
        "data": data, "epochs": epochs, "repeats": repeats,
        "contenders": {name: {"seconds_per_epoch": seconds, "peak_rss_mb": rss}
                       for name, (seconds, _, rss) in best.items()},
    })
    return best


def write_results(path, payload):
    """Write ``payload`` and a description of this machine to ``path`` as JSON, atomically."""
    # Imported here, not at the top: a contender's process then loads only what the contender itself imports, and the
    # matrix-product floor's peak memory is that of the data and NumPy alone.
    from fileio import atomic_write
    from study.report import machine_info

    payload = dict(payload, machine=machine_info())
    atomic_write(path, lambda f: f.write(json.dumps(payload, indent=2).encode()))
    print(f"written to {path}")
