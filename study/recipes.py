"""How the runs of a log were made: the record beside each log (``grid_search.csv`` -> ``grid_search.recipe.json``)
of the recipe (every ``MLP`` argument but the varied settings), a fingerprint of the data and the BLAS kernels, and
the rule by which a log is resumed only with the same recipe and data.
"""

import json
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

from fileio import atomic_write, fingerprint


def recipe_path(log_path):
    """The file beside a log that records how its runs were made: ``grid_search.csv`` -> ``grid_search.recipe.json``."""
    return Path(log_path).with_suffix(".recipe.json")


def plain(value):
    """``value`` as JSON holds it: NumPy scalars and arrays, tuples and Paths become plain numbers, lists and text."""
    if isinstance(value, np.generic | np.ndarray):
        return plain(value.tolist())
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def describe_recipe(model_kwargs, X_train, y_train, X_val, y_val):
    """What a log's runs share: the recipe (every ``MLP`` argument but the varied settings), a fingerprint of the
    data, and the BLAS kernels (threadpoolctl's ``architecture``), which set the last bits of every sum. The kernels
    are sorted: the order in which a process happened to load its BLAS libraries says nothing about how it computes.
    """
    blas = [{key: info.get(key) for key in ("internal_api", "version", "architecture")}
            for info in threadpool_info() if info.get("user_api") == "blas"]
    return {"recipe": plain(model_kwargs), "data": fingerprint(X_train, y_train, X_val, y_val),
            "blas": sorted(blas, key=lambda kernel: json.dumps(kernel, sort_keys=True))}


def same_recipe(logged, described, part):
    """Whether ``part`` (``"recipe"``, ``"data"`` or ``"blas"``) of two descriptions is the same, compared as plain
    values and with the BLAS kernels in any order (records written before they were sorted)."""
    def normal(described):
        value = plain(described.get(part))
        return sorted(value, key=lambda kernel: json.dumps(kernel, sort_keys=True)) if part == "blas" else value

    return normal(logged) == normal(described)


def read_recipe(log_path):
    """The description recorded beside ``log_path``; ValueError naming the file if it is not one."""
    path = recipe_path(log_path)
    try:
        logged = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a readable recipe record ({error}); it says how the runs of {log_path} "
                         "were made: restore it (from git, say), or start a new log") from None
    if not isinstance(logged, dict) or not {"recipe", "data"} <= set(logged):
        raise ValueError(f"{path} is not a recipe record (it lacks 'recipe' or 'data'): restore it (from git, say), or "
                         "start a new log")
    return logged


def check_recipe(log_path, described, has_runs, restart="fresh=True"):
    """Write the recipe record of a log (``described``, :func:`describe_recipe`) unless it holds runs: then
    ValueError unless their recipe and data are ``described``'s (the BLAS kernels may differ: they move only the
    last bits), saying to pass ``restart`` to start a new log. A record that already says the same is left as it
    is."""
    path = recipe_path(log_path)
    if not path.exists():
        if has_runs:
            raise ValueError(f"{log_path} holds runs but no {path.name} says how they were made, so they cannot be "
                             f"resumed safely: pass {restart} to start a new log (the old one is kept as .bak)")
        write_recipe(log_path, described)
        return
    logged = read_recipe(log_path)
    differs = [part for part in ("recipe", "data") if not same_recipe(logged, described, part)]
    if differs and has_runs:
        raise ValueError(f"{log_path} was made with another {' and other '.join(differs)} ({logged[differs[0]]} "
                         f"against {described[differs[0]]}); its runs cannot be ranked with these. Pass {restart} to "
                         "start a new log (the old one is kept as .bak), or give a new log_path")
    if differs:
        write_recipe(log_path, described)


def write_recipe(log_path, described):
    atomic_write(recipe_path(log_path), lambda f: f.write((json.dumps(described, indent=1) + "\n").encode()))
