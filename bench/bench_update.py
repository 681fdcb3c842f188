"""Why numba is a dependency: one step of each update rule on the wide network's parameters, side by side.

The parameters of section 7's [784, 1024, 1024, 10] network (1.86 M floats), one step with L2 / weight decay 1e-4:

- ``reference``: the textbook step in plain NumPy (``reference_step``), one array operation a line;
- ``numexpr``: the same arithmetic as numexpr expressions, each evaluated blockwise in the cache (one per array the
  rule writes: three for Adam), the other candidate library the issue named;
- ``numba``: the project's ``step``, one compiled pass over each parameter, on one thread as in training;
- ``pytorch``: ``torch.optim``'s own step (foreach) on the same arrays, when torch is installed.

Each is timed in this process (PyTorch and numexpr with the threads they take), best of ``--repeats`` runs of
``--steps`` steps; the ratios to PyTorch are printed and the figures written to ``--output``.

    python bench/bench_update.py [--steps 50] [--repeats 5] [--output bench/update_results.json]
"""

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import torch_available, write_results

from kernels import one_thread
from optimizers import SGD, Adam, Momentum

SHAPES = [(784, 1024), (1024,), (1024, 1024), (1024,), (1024, 10), (10,)]
LR, WEIGHT_DECAY = 1e-3, 1e-4


def arrays():
    rng = np.random.default_rng(0)
    return [(rng.standard_normal(shape, dtype=np.float32), rng.standard_normal(shape, dtype=np.float32) * 0.01)
            for shape in SHAPES]


def numexpr_rule(name):
    """The rule ``name`` as numexpr expressions, evaluated in place."""
    import numexpr

    params, state = arrays(), {}

    def step():
        state["t"] = state.get("t", 0) + 1
        for i, (p, g) in enumerate(params):
            wd = WEIGHT_DECAY if p.ndim > 1 else 0.0
            if name == "sgd":
                numexpr.evaluate("p - lr * (g + wd * p)", local_dict={"p": p, "g": g, "lr": LR, "wd": wd}, out=p)
            elif name == "momentum":
                v = state.setdefault(i, np.zeros_like(p))
                numexpr.evaluate("0.9 * v + g + wd * p", local_dict={"p": p, "g": g, "v": v, "wd": wd}, out=v)
                numexpr.evaluate("p - lr * v", local_dict={"p": p, "v": v, "lr": LR}, out=p)
            else:
                m, v = state.setdefault(i, np.zeros_like(p)), state.setdefault(-1 - i, np.zeros_like(p))
                t = state["t"]
                step_size = LR * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
                numexpr.evaluate("m + (g - m) * 0.1", local_dict={"m": m, "g": g}, out=m)
                numexpr.evaluate("v + (g * g - v) * 0.001", local_dict={"v": v, "g": g}, out=v)
                numexpr.evaluate("p * (1 - lr * wd) - s * m / (sqrt(v) + e)", out=p, local_dict={
                    "p": p, "m": m, "v": v, "lr": LR, "wd": wd, "s": step_size, "e": 1e-8 * np.sqrt(1 - 0.999**t)})
    return step


def project_rule(make, reference):
    params, rule = arrays(), make()
    method = rule.reference_step if reference else rule.step
    return lambda: method(params, LR, WEIGHT_DECAY)


def torch_rule(name):
    import torch

    params = [torch.from_numpy(p) for p, _ in arrays()]
    grads = [torch.from_numpy(g) for _, g in arrays()]
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    optimizer = {"sgd": lambda: torch.optim.SGD(params, lr=LR, weight_decay=WEIGHT_DECAY),
                 "momentum": lambda: torch.optim.SGD(params, lr=LR, momentum=0.9, weight_decay=WEIGHT_DECAY),
                 "adam": lambda: torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)}[name]()
    return optimizer.step


def best_ms(step, steps, repeats):
    step()  # compiles, allocates the state
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - started) / steps)
    return 1e3 * best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("update_results.json"))
    args = parser.parse_args()
    one_thread()
    makers = {"sgd": SGD, "momentum": Momentum, "adam": Adam}
    with_torch = torch_available()
    # numexpr, the candidate numba was chosen over, is a reference like torch: measured where it is installed.
    with_numexpr = importlib.util.find_spec("numexpr") is not None
    if not with_numexpr:
        print("numexpr is not installed: no numexpr contender (pip install numexpr)")
    table = {}
    for name, make in makers.items():
        contenders = {"reference": project_rule(make, reference=True),
                      **({"numexpr": numexpr_rule(name)} if with_numexpr else {}),
                      "numba": project_rule(make, reference=False)}
        if with_torch:
            contenders["pytorch"] = torch_rule(name)
        table[name] = {contender: best_ms(step, args.steps, args.repeats) for contender, step in contenders.items()}
        line = "  ".join(f"{contender} {ms:.3f} ms" for contender, ms in table[name].items())
        print(f"{name:>9}: {line}")
        if with_torch:
            ratios = {contender: ms / table[name]["pytorch"] for contender, ms in table[name].items()
                      if contender in ("numba", "numexpr")}
            print(f"{'':>9}  " + ", ".join(f"{contender} / pytorch {ratio:.2f}" for contender, ratio in ratios.items()))
    write_results(args.output, {"parameters": int(sum(np.prod(shape) for shape in SHAPES)), "steps": args.steps,
                                "repeats": args.repeats, "ms_per_step": table})


if __name__ == "__main__":
    main()
