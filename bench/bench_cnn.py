"""Speed of the MLP's convolutional teacher (``conv.CNN``): against PyTorch doing the same network and against its
own bare matrix products, in one run; then one whole epoch of it, to size the teacher's long job.

The network: two stages of 2 x (conv 3x3 - BatchNorm - ReLU) and a 2x2 max pool, 32 then 64 channels, then FC 256 -
BatchNorm - ReLU - dropout 0.3 - FC 10, softmax cross-entropy; AdamW (lr 1e-3, weight decay 1e-4), batch 128,
shuffled. A timed run trains ``--fraction`` of an epoch of the 54,000 training images (an epoch is 422 batches,
minutes for the numpy CNN: a tenth times it well, since every batch does the same work) after three untimed batches
(numba's loading, the first buffers), and reports seconds per epoch, the time per batch times 422. Contenders take
turns, each keeps its fastest repeat (``harness.best_of``). Beside the numpy CNN:

- PyTorch CPU, the same network on the same batches: ``torch.nn.Conv2d`` (no bias, as ours: batch normalisation
  follows each) on NCHW tensors, its default, and with ``channels_last`` memory, the stronger of the two here;
- the matrix products of the numpy CNN and nothing else, through NumPy's BLAS: each convolution's forward product
  ``cols (M, 9C) @ W (9C, F)``, its weights' gradient ``cols.T @ top_diff`` and its bottom diff's product ``(M, 9F)
  @ (9F, C)`` (none for the first), and the dense head's, on arrays of the same shapes: the floor no implementation
  on this BLAS can beat; and the same products through PyTorch's BLAS, which says how much of the ratio is the
  two BLAS libraries;
- the numpy CNN, its matrix products and PyTorch (both layouts) on one core, timed in the process's CPU seconds rather
  than the wall clock's: on a machine shared with other work, wall-clock times move with the load (two BLAS threads
  wait for each other whenever the other work holds a core), while one thread's CPU time counts the work alone, so
  their ratio is the one that other work moves least.

Then, in the numpy CNN alone, where a training step's time goes, layer kind by layer kind (milliseconds of CPU time on
one core, best of five steps), and one whole epoch of 422 batches with the 6,000 validation images measured at its
end.

    python bench/bench_cnn.py [--fraction 0.1] [--repeats 3] [--output bench/cnn_results.json]
"""

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from harness import load_data, measure, run_benchmark, write_results
from threadpoolctl import threadpool_limits

from kernels import one_thread

SETTINGS = {"channels": (32, 64), "layers": [784, 256, 10], "batch_norm": True, "dropout": 0.3, "optimizer": "adam",
            "L2_lambda": 1e-4, "print_log": False}
LR, BATCH, SIDE, CLASSES = 1e-3, 128, 28, 10
HIDDEN = SETTINGS["layers"][1]


def train_step(model, X, y):
    """One training batch as the Solver runs it (``Solver.step``: forward, backward, update, its compiled passes on one
    thread) at rate ``LR``."""
    one_thread()
    model.solver.current_lr = LR
    model.solver.step(X, y)


def batches(n, fraction, seed=0):
    """The index arrays of the first ``fraction`` of a shuffled epoch of ``n`` images, in batches of ``BATCH``."""
    order = np.random.default_rng(seed).permutation(n)
    count = max(1, round(fraction * -(-n // BATCH)))
    return [order[start:start + BATCH] for start in range(0, count * BATCH, BATCH)]


def per_epoch(seconds, done, n):
    """Seconds per epoch from ``seconds`` for ``done`` batches of an epoch of ``n`` images."""
    return seconds / done * -(-n // BATCH)


def one_core(limit):
    """The clock that times a contender (the process's CPU seconds when ``limit``, else the wall clock's), its BLAS
    and PyTorch held to one thread when ``limit``."""
    if not limit:
        return time.perf_counter
    threadpool_limits(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    return time.process_time


def run_numpy_cnn(fraction, validate=False, single=False):
    from conv import CNN

    X_train, y_train, X_val, y_val, _ = load_data()
    scratch, model = CNN(**SETTINGS), CNN(**SETTINGS)
    for _ in range(3):  # the warm-up, on a throwaway model
        train_step(scratch, X_train[:BATCH], y_train[:BATCH])
    del scratch
    order, clock = batches(len(X_train), fraction), one_core(single)
    started = clock()
    for batch in order:
        train_step(model, X_train[batch], y_train[batch])
    accuracy = float(np.mean(model.probabilities(X_val).argmax(axis=1) == y_val)) if validate else float("nan")
    return per_epoch(clock() - started, len(order), len(X_train)), accuracy


def run_numpy_cnn_one_core(fraction):
    return run_numpy_cnn(fraction, single=True)


def run_numpy_epoch(epochs):
    """``epochs`` whole epochs (one, here), the validation set measured at the end: what the long job will pay."""
    return run_numpy_cnn(float(epochs), validate=True)


def torch_network(channels_last):
    import torch
    from torch import nn

    layers, width = [], 1
    for stage in SETTINGS["channels"]:
        for _ in range(2):
            layers += [nn.Conv2d(width, stage, 3, padding=1, bias=False), nn.BatchNorm2d(stage), nn.ReLU()]
            width = stage
        layers.append(nn.MaxPool2d(2))
    features = width * (SIDE // 2 ** len(SETTINGS["channels"])) ** 2
    layers += [nn.Flatten(), nn.Linear(features, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU(),
               nn.Dropout(SETTINGS["dropout"]), nn.Linear(HIDDEN, CLASSES)]
    net = nn.Sequential(*layers)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def run_torch(fraction, channels_last=False, single=False):
    import torch

    X_train, y_train, _, _, _ = load_data()
    torch.manual_seed(0)
    images = torch.from_numpy(X_train).view(-1, 1, SIDE, SIDE)
    labels = torch.from_numpy(y_train.astype(np.int64))
    nets = [torch_network(channels_last) for _ in range(2)]  # the first a throwaway warm-up
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(net, optimizer, batch):
        inputs = images[batch]
        inputs = inputs.contiguous(memory_format=torch.channels_last) if channels_last else inputs
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(inputs), labels[batch]).backward()
        optimizer.step()

    optimizers = [torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=SETTINGS["L2_lambda"]) for net in nets]
    clock = one_core(single)
    for _ in range(3):
        step(nets[0], optimizers[0], torch.arange(BATCH))
    order = [torch.from_numpy(batch) for batch in batches(len(X_train), fraction)]
    started = clock()
    for batch in order:
        step(nets[1], optimizers[1], batch)
    return per_epoch(clock() - started, len(order), len(X_train)), float("nan")


def run_torch_channels_last(fraction):
    return run_torch(fraction, channels_last=True)


def run_torch_one_core(fraction):
    return run_torch(fraction, single=True)


def run_torch_channels_last_one_core(fraction):
    return run_torch(fraction, channels_last=True, single=True)


def product_shapes():
    """``[(M, K, F, bottom)]``: each layer's forward product (M, K) @ (K, F) in a training batch and the shapes of its
    bottom diff's product, or None for the first layer, which skips it."""
    shapes, width, side = [], 1, SIDE
    for stage in SETTINGS["channels"]:
        for _ in range(2):
            m = BATCH * side * side
            shapes.append((m, 9 * width, stage, ((m, 9 * stage), (9 * stage, width)) if shapes else None))
            width = stage
        side //= 2
    features, hidden = width * side * side, HIDDEN
    return [*shapes, (BATCH, features, hidden, ((BATCH, hidden), (hidden, features))),
            (BATCH, hidden, CLASSES, ((BATCH, CLASSES), (CLASSES, hidden)))]


def run_matmul_floor(fraction, library="numpy", single=False):
    """Every product of the numpy CNN's training batches and nothing else: forward, weights' gradient and bottom
    diff, on float32 arrays of the same shapes, through NumPy's BLAS or (``library="torch"``) PyTorch's."""
    rng = np.random.default_rng(0)
    layers = []
    for m, k, f, bottom in product_shapes():
        shapes = [(m, k), (k, f), (m, f), *(bottom or ())]
        layers.append([rng.standard_normal(shape, dtype=np.float32) for shape in shapes])
    if library == "torch":
        import torch

        layers = [[torch.from_numpy(array) for array in arrays] for arrays in layers]
    multiply = (lambda a, b, out: torch.matmul(a, b, out=out)) if library == "torch" else np.matmul
    # Each product writes into an array made once, as a BLAS call would: the floor is the arithmetic alone.
    outputs = [[multiply(arrays[0], arrays[1], None), multiply(arrays[0].T, arrays[2], None),
                multiply(arrays[3], arrays[4], None) if len(arrays) > 3 else None] for arrays in layers]
    count, clock = len(batches(54000, fraction)), one_core(single)
    started = clock()
    for _ in range(count):
        for (cols, weights, diff, *bottom), (top, grad, bottom_diff) in zip(layers, outputs, strict=True):
            multiply(cols, weights, out=top)
            multiply(cols.T, diff, out=grad)
            if bottom:
                multiply(bottom[0], bottom[1], out=bottom_diff)
    return per_epoch(clock() - started, count, 54000), float("nan")


def run_matmul_floor_one_core(fraction):
    return run_matmul_floor(fraction, single=True)


def run_torch_matmul_floor(fraction):
    return run_matmul_floor(fraction, library="torch")


def step_breakdown(steps=5):
    """Milliseconds of one training step of the numpy CNN by layer kind, forward and backward, and the update, in CPU
    time on one core (as the "one core" contenders are timed): the best of ``steps`` steps for each, on one batch;
    ``im2col`` is the part of Conv2D's time spent in window copies (padding included), the rest of it being its
    products and their outputs' allocation."""
    import conv
    from conv import CNN, channel_view

    X_train, y_train, *_ = load_data()
    X, y = X_train[:BATCH], y_train[:BATCH]
    model = CNN(**SETTINGS)
    limit = threadpool_limits(1)
    train_step(model, X, y)
    best, clock = defaultdict(lambda: float("inf")), time.process_time
    copy = conv.im2col

    def timed_copy(*args, **kwargs):
        started = clock()
        cols = copy(*args, **kwargs)
        spent["im2col (in Conv2D)"] += clock() - started
        return cols

    conv.im2col = timed_copy
    for _ in range(steps):
        spent = defaultdict(float)
        top = X.reshape(-1, SIDE, SIDE, 1)
        for layer in model.net:
            layer.training = True
            started = clock()
            top = channel_view(layer, layer.forward, top)
            spent[f"{type(layer).__name__} forward"] += clock() - started
        diff = model.softmax.backward(y)
        for layer in reversed(model.net[:-1]):
            started = clock()
            diff = channel_view(layer, layer.backward, diff)
            spent[f"{type(layer).__name__} backward"] += clock() - started
        started = clock()
        model.update(LR)
        spent["update"] += clock() - started
        for name, seconds in spent.items():
            best[name] = min(best[name], 1000 * seconds)
    conv.im2col = copy
    limit.restore_original_limits()
    return dict(best)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, default=0.1, help="of an epoch, in each timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--whole-epoch", type=int, default=1, help="0: skip the whole epoch's measurement")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("cnn_results.json"))
    args = parser.parse_args()

    load_before = os.getloadavg()
    best = run_benchmark({"numpy CNN": run_numpy_cnn, "matmul floor": run_matmul_floor,
                          "numpy CNN, one core": run_numpy_cnn_one_core,
                          "matmul floor, one core": run_matmul_floor_one_core},
                         {"pytorch": run_torch, "pytorch channels_last": run_torch_channels_last,
                          "pytorch matmul floor": run_torch_matmul_floor, "pytorch, one core": run_torch_one_core,
                          "pytorch channels_last, one core": run_torch_channels_last_one_core},
                         args.fraction, args.repeats, args.output)
    ours = best["numpy CNN"][0]
    ratios = {"numpy CNN / matmul floor": ours / best["matmul floor"][0],
              "numpy CNN / matmul floor, one core": best["numpy CNN, one core"][0] / best["matmul floor, one core"][0]}
    if "pytorch" in best:
        ratios.update({"numpy CNN / pytorch": ours / best["pytorch"][0],
                       "numpy CNN / pytorch channels_last": ours / best["pytorch channels_last"][0],
                       "matmul floor / pytorch matmul floor":
                           best["matmul floor"][0] / best["pytorch matmul floor"][0],
                       "numpy CNN / pytorch, one core": best["numpy CNN, one core"][0] / best["pytorch, one core"][0],
                       "numpy CNN / pytorch channels_last, one core":
                           best["numpy CNN, one core"][0] / best["pytorch channels_last, one core"][0]})
    breakdown = step_breakdown()
    print("one training step, ms by layer kind:", {name: round(ms, 1) for name, ms in sorted(breakdown.items())})
    epoch_seconds, epoch_accuracy, _ = measure(run_numpy_epoch, 1) if args.whole_epoch else (float("nan"),) * 3
    print(f"one whole epoch of the numpy CNN on 54,000 images: {epoch_seconds:.0f} s (validation accuracy after it "
          f"{epoch_accuracy:.4f})")
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}")
    recorded = json.loads(args.output.read_text())
    recorded.pop("machine")
    load = {"before": load_before, "after": os.getloadavg()}
    print(f"load average (1, 5, 15 min) before the run {load['before']}, after it {load['after']}, on "
          f"{os.cpu_count()} cores: other work shared them")
    write_results(args.output, dict(recorded, fraction=args.fraction, load_average=load, ratios=ratios,
                                    step_ms=breakdown,
                                    epoch={"seconds": epoch_seconds, "val_acc_after_one_epoch": epoch_accuracy}))


if __name__ == "__main__":
    main()
