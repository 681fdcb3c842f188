"""Do the epochs of a long run slow down? Each epoch's time, for the runs whose state decays geometrically.

Where a weight's gradient stays exactly zero (a weight fed by a pixel that is blank in the whole batch), Adam's first
moment, momentum's velocity and an L2-decayed weight shrink by a constant factor every step and, within a few epochs,
reach the subnormal floats, on which x86 arithmetic is many times slower: the epochs then get slower as the run goes
on. The update rules set such values to zero; this benchmark shows whether the epochs stay level.

- ``wide adamw``: section 7's recipe (``study.config.WIDE_RECIPE``), the first ``--epochs`` of its ``max_epoch``;
- ``momentum, L2``: the seed's best network with heavy-ball momentum (lr 0.01) and strong L2 (0.05), 40 planned.

Each epoch is trained with ``train(..., epochs=1)`` and timed by the model's own clock; printed: every epoch's time
and the last epoch over the first (at most 1.10 is the goal).

    python bench/bench_epochs.py [--epochs 9] [--output bench/epochs_results.json]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import load_data, warm_up, write_results

from modules import MLP
from study.config import WIDE_RECIPE

RUNS = {
    "wide adamw": dict(WIDE_RECIPE, print_log=False),
    "momentum, L2": dict(layers=[784, 256, 128, 10], optimizer="momentum", lr=0.01, L2_lambda=0.05, max_epoch=40,
                         print_log=False),
}


def epoch_times(settings, epochs, data):
    warm_up(settings, *data)  # else the first epoch carries numba's loading of the compiled step
    model = MLP(**settings)
    times = []
    for _ in range(epochs):
        before = model.train_time_s
        model.train(*data, epochs=1)
        times.append(model.train_time_s - before)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("epochs_results.json"))
    args = parser.parse_args()
    X_train, y_train, X_val, y_val, source = load_data()
    print(f"data: {source}; {args.epochs} epochs a run")
    results = {}
    for name, settings in RUNS.items():
        times = epoch_times(settings, args.epochs, (X_train, y_train, X_val, y_val))
        results[name] = {"seconds_per_epoch": times, "last_over_first": times[-1] / times[0],
                         "slowest_over_first": max(times) / times[0]}
        print(f"{name:>13}: " + " ".join(f"{t:.2f}" for t in times) +
              f" s; last / first {times[-1] / times[0]:.2f}, slowest / first {max(times) / times[0]:.2f}"
              "  (goal at most 1.10)")
    write_results(args.output, {"data": source, "epochs": args.epochs, "runs": results})


if __name__ == "__main__":
    main()
