"""The benchmarks' figures as the README shows them (``bench/*.json``, written by the scripts in ``bench/``), and the
small markdown helpers that the report shares with them."""

import json
import math
from pathlib import Path


def duration(seconds):
    """A wall time for people: ``"42 s"``, ``"9.5 min"``, ``"1.25 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(machine):
    parts = [f"{machine.get('processor') or machine.get('machine') or 'unknown processor'}"]
    if machine.get("machine") and machine.get("machine") != parts[0]:
        parts[0] += f" ({machine['machine']})"
    cpus = machine.get("cpu_count") or machine.get("cpus")
    if cpus:
        parts.append(f"{cpus} CPUs")
    for key, name in (("python", "Python"), ("numpy", "NumPy"), ("blas", "BLAS")):
        if machine.get(key):
            parts.append(f"{name} {machine[key]}")
    return ", ".join(parts)


BENCHES = [  # (file in bench/, the script that writes it, what it times)
    ("results.json", "bench/bench_train.py", "Training speed of the seed's network"),
    ("beyond_results.json", "bench/bench_beyond.py", "Training speed of section 7's wide network"),
    ("frontier_results.json", "bench/bench_frontier.py",
     "Training speed of section 9's final recipe (three hidden layers of 1024, batch normalisation, augmentation, "
     "label smoothing), against PyTorch doing the same and against its bare matrix products"),
]


def bench_section(bench, script="bench/bench_train.py", what="Training speed of the seed's network"):
    """A benchmark's contenders as a table, with the ratio of each to the first; a short note if the file has a
    shape this script does not know."""
    contenders = bench.get("contenders") if isinstance(bench, dict) else None
    if not isinstance(contenders, dict) or not contenders:
        return f"The results of `{script}` are present but hold no `contenders` table this script can read."
    columns = list(dict.fromkeys(key for numbers in contenders.values() for key in numbers))

    def cell(key, value):
        if not isinstance(value, float):
            return str(value)
        return f"{value:.0f}" if key.endswith("_mb") else f"{value:.3f}"

    rows = [(name, *(cell(key, numbers.get(key, "")) for key in columns)) for name, numbers in contenders.items()]
    details = ", ".join(f"{key} {bench[key]}" for key in ("data", "epochs", "repeats") if key in bench)
    text = f"{what} (`{script}`" + (f"; {details}" if details else "") + "):\n\n"
    text += table(["contender", *(key.replace("_", " ") for key in columns)], rows)
    first, *others = contenders
    seconds = {name: numbers.get("seconds_per_epoch") for name, numbers in contenders.items()}
    if seconds[first] and all(seconds[name] for name in others):
        text += "\n\n" + "; ".join(f"{first} / {name}: {seconds[first] / seconds[name]:.2f}" for name in others) + "."
    text += ("\n\nThe numpy MLP and PyTorch first train a throwaway model briefly, untimed, so that what a process "
             "pays once (numba loading the compiled update steps, PyTorch's first calls) is not charged to the few "
             "timed epochs.")
    if "peak_rss_mb" in columns:
        text += (" Peak RSS is each contender's own process at its highest (its VmHWM): the data, the libraries it "
                 "imports, and what its training allocates.")
    text += blas_split(seconds)
    augmenting = bench.get("augmentation_seconds_per_epoch")
    if isinstance(augmenting, float) and seconds[first]:
        text += (f" Moving and mirroring the images takes {augmenting:.3f} s of an epoch by itself, "
                 f"{augmenting / seconds[first]:.1%} of the {first}'s epoch"
                 + (f" and {augmenting / seconds['wide network']:.1%} of the wide network's."
                    if seconds.get("wide network") else "."))
    passes = bench.get("layer_pass_ms")
    if isinstance(passes, dict) and {"reference", "fast"} <= set(passes):
        text += (f" One hidden layer's batch normalisation and dropout, forward and backward through a batch, take "
                 f"{passes['reference']:.3f} ms by their reference formulas and {passes['fast']:.3f} ms by the fast "
                 f"passes that training runs ({passes['reference'] / passes['fast']:.1f} times as fast, the same "
                 "numbers bit for bit).")
    if isinstance(bench.get("machine"), dict):
        text += f"\n\nBenchmark machine: {machine_line(bench['machine'])}."
    return text


def blas_split(seconds):
    """With both floors timed: what each framework adds to its own matrix products (its epoch less its floor: the
    update, the elementwise passes, the Python around them), and the ratio to PyTorch (with AdamW's fused step when it
    was timed, the stronger reference) had PyTorch done its products as fast as NumPy's BLAS does here; otherwise
    nothing. What a framework adds barely depends on its BLAS, so that ratio is what a machine whose two BLAS
    libraries are equally fast would show."""
    reference = "pytorch fused AdamW" if seconds.get("pytorch fused AdamW") else "pytorch"
    names = ("numpy MLP", "matmul floor", reference, "pytorch matmul floor")
    if not all(seconds.get(name) for name in names):
        return ""
    ours, floor, theirs, their_floor = (seconds[name] for name in names)
    return (f" Each framework's epoch beyond its own matrix products: numpy MLP {ours - floor:.2f} s, {reference} "
            f"{theirs - their_floor:.2f} s; NumPy's BLAS does the products in {floor / their_floor:.2f} of PyTorch's "
            f"time on this machine. Had PyTorch done them as fast, numpy MLP / {reference} would be "
            f"{ours / (floor + theirs - their_floor):.2f}: what a machine whose two BLAS libraries are equally fast "
            "would show.")


def grid_bench_section(bench):
    """What ``bench/bench_grid.py`` measured: the grid on one process and on two, and successive halving."""
    grid, halving = bench["grid"], bench["halving"]
    serial = grid.get("seconds_n_jobs_1")
    text = f"The whole {bench['runs']}-run grid (`bench/bench_grid.py`, {bench['epochs']} epochs a run): "
    text += f"{duration(grid['seconds_n_jobs_2'])} with `n_jobs=2`"
    if serial:
        same = (grid.get("n_jobs_1_against_2") or {}).get("same")
        text += (f", {duration(serial)} with `n_jobs=1` ({serial / grid['seconds_n_jobs_2']:.2f} times as long; the "
                 f"two logs hold {'the same' if same else 'different'} numbers)")
    text += (f". Successive halving: {duration(halving['seconds'])}, {halving['epochs_spent']} epochs of the grid's "
             f"{halving['grid_epochs']}, picking {halving['settings']}, {halving['gap_points']:.2f} points of "
             f"validation accuracy below the grid's best.")
    return text


def update_bench_section(bench):
    """What ``bench/bench_update.py`` measured: one step of each update rule, each way, in milliseconds."""
    steps = bench["ms_per_step"]
    contenders = list(dict.fromkeys(name for rule in steps.values() for name in rule))
    rows = [(rule, *(f"{times[name]:.3f}" if name in times else "" for name in contenders))
            for rule, times in steps.items()]
    text = (f"One step of each update rule on the wide network's {bench['parameters']:,} parameters "
            f"(`bench/bench_update.py`, ms, best of {bench['repeats']} runs of {bench['steps']} steps):\n\n")
    text += table(["rule", *contenders], rows)
    if "pytorch" in contenders:
        text += "\n\n" + "; ".join(f"{rule}: numba / pytorch {times['numba'] / times['pytorch']:.2f}"
                                   for rule, times in steps.items()) + "."
    return text


def epochs_bench_section(bench):
    """What ``bench/bench_epochs.py`` measured: each epoch's time in long runs, and the last over the first."""
    rows = [(name, " ".join(f"{t:.2f}" for t in run["seconds_per_epoch"]), f"{run['last_over_first']:.2f}",
             f"{run['slowest_over_first']:.2f}") for name, run in bench["runs"].items()]
    return (f"Each epoch's time in long runs (`bench/bench_epochs.py`, {bench['epochs']} epochs, after an untimed "
            "warm-up so that the first epoch does not carry numba's loading of the compiled step):\n\n"
            + table(["run", "seconds per epoch", "last / first", "slowest / first"], rows))


def cnn_bench_section(bench):
    """What ``bench/bench_cnn.py`` measured: the convolutional teacher's epoch against PyTorch and its own matrix
    products, wall-clock and on one core, the machine's load while it ran, and where one training step goes."""
    contenders = bench["contenders"]
    rows = [(name, f"{numbers['seconds_per_epoch']:.1f}", f"{numbers['peak_rss_mb']:.0f}")
            for name, numbers in contenders.items()]
    text = (f"Training speed of `conv.CNN`, the MLP's convolutional teacher (`bench/bench_cnn.py`; data "
            f"{bench['data']}, {bench['fraction']} of an epoch a run, best of {bench['repeats']} runs"
            + ("; \"one core\": one thread, timed in CPU seconds" if any("one core" in name for name in contenders)
               else "") + "):\n\n")
    text += table(["contender", "seconds per epoch", "peak rss mb"], rows)
    text += "\n\n" + "; ".join(f"{name}: {ratio:.2f}" for name, ratio in bench["ratios"].items()) + "."
    load = bench["load_average"]
    text += (f" Other work shared the {bench['machine']['cpu_count']} cores during the run (load average over a "
             f"minute {load['before'][0]:.1f} before it, {load['after'][0]:.1f} after): wall-clock times move with "
             "the load, the one-core CPU times much less.")
    steps = bench["step_ms"]
    convolutions = steps["Conv2D forward"] + steps["Conv2D backward"]
    rest = sum(ms for name, ms in steps.items() if not name.startswith(("Conv2D", "im2col")))
    text += (f" In one training step (ms of CPU time on one core, by layer kind, best of five) the convolutions took "
             f"{convolutions:.0f} ms, {steps['im2col (in Conv2D)']:.0f} of them window copies, and everything else "
             f"{rest:.0f} ms.")
    epoch = bench["epoch"]
    if math.isfinite(epoch["seconds"]):
        text += (f" One whole epoch of the numpy CNN took {duration(epoch['seconds'])}, reaching "
                 f"{epoch['val_acc_after_one_epoch']:.3f} validation accuracy.")
    return text + f"\n\nBenchmark machine: {machine_line(bench['machine'])}."


def bench_paragraphs(bench_dir):
    """The README's paragraphs for the benchmarks whose results are in ``bench_dir``, in a fixed order."""
    bench_dir = Path(bench_dir)
    paragraphs = [bench_section(json.loads((bench_dir / name).read_text()), script, what)
                  for name, script, what in BENCHES if (bench_dir / name).exists()]
    for name, render in (("cnn_results.json", cnn_bench_section), ("update_results.json", update_bench_section),
                         ("epochs_results.json", epochs_bench_section), ("grid_results.json", grid_bench_section)):
        if (bench_dir / name).exists():
            paragraphs.append(render(json.loads((bench_dir / name).read_text())))
    return paragraphs
