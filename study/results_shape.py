"""The shape of ``log/results.json``: what the report (``study.report``) reads from it, checked before anything is
rendered (:func:`shape_problem`)."""

import json
import math

# What the report reads from ``log/results.json``, checked before anything is rendered so that a file of another
# shape (edited, cut short, written by another version) is refused with a sentence rather than a KeyError deep in
# :func:`render`: for each key the kind of its value, a dict for an object (the keys it must hold), a one-item list
# for a list of such items. A key ending in ``?`` may be absent (a file written before that part existed); keys not
# listed are not read, and not checked. A list holds at least one item, unless its shape says ``MAY_BE_EMPTY``.
# Numbers are finite; a number whose key names an accuracy or its interval is a fraction in [0, 1], and an accuracy
# lies inside its own interval (:func:`number_problem`, :func:`interval_problem`).
NUMBER, MAYBE_NUMBER, WHOLE, COUNT, FLAG, TEXT, INTERVAL = (
    "a number", "null or a number", "a whole number", "a positive whole number", "true or false", "text",
    "null or two numbers")
MAY_BE_EMPTY = "may be empty"
_SETTINGS = {"layers": [WHOLE], "lr": NUMBER, "L2_lambda": NUMBER}
_PLACE = {"value": NUMBER, "z": MAYBE_NUMBER, "below": WHOLE, "above": WHOLE}  # where a run falls among the seeds
_MCNEMAR = {"model": TEXT, "test_accuracy": NUMBER, "ci_low": NUMBER, "ci_high": NUMBER, "difference": NUMBER,
            "only_reference_right": WHOLE, "only_model_right": WHOLE, "p_value": NUMBER, "significant": FLAG}
_TARGET = {"model": TEXT, "test_acc": NUMBER, "ci_low": NUMBER, "ci_high": NUMBER, "target": NUMBER, "reached": FLAG}
_CANDIDATE = {"candidate": TEXT, "round": COUNT, "chosen": FLAG, "changes": TEXT, "best_val_acc": NUMBER,
              "best_val_loss": NUMBER, "epochs": WHOLE, "train_time_s": NUMBER}  # a candidate of section 9
RESULTS_SHAPE = {
    "quick?": FLAG,
    "test": {"accuracy": NUMBER, "loss": NUMBER, "images?": COUNT, "ci?": INTERVAL},
    "best": {**_SETTINGS, "best_val_acc": NUMBER},
    "grid": {"runs": COUNT, "n_jobs": WHOLE, "wall_time_s": NUMBER, "sum_train_time_s": NUMBER, "trained_now?": WHOLE},
    "final_training": {"wall_time_s": NUMBER},
    "notebook_wall_time_s": NUMBER,
    "machine?": {},
    "baseline?": {"settings": TEXT, "val_accuracy": NUMBER, "test_accuracy": NUMBER, "test_ci": INTERVAL,
                  "mcnemar": [_MCNEMAR]},
    "halving?": {"settings": _SETTINGS, "best_val_acc": NUMBER, "epochs": WHOLE, "grid_epochs": COUNT,
                 "rungs": WHOLE, "wall_time_s": NUMBER},
    "lr_followup?": {"table": [{"lr": NUMBER, "diverged": FLAG, "best_val_acc": MAYBE_NUMBER,
                                "best_val_loss": MAYBE_NUMBER, "source": TEXT}],
                     "verdict": {"peak_lr": NUMBER, "peak_val_acc": NUMBER, "largest_lr": FLAG, "changes_choice": FLAG,
                                 "chosen_lr": NUMBER, "gain_points": NUMBER, "diverged_lrs": [NUMBER, MAY_BE_EMPTY]},
                     "wall_time_s": NUMBER},
    "beyond?": {"table": [{"model": TEXT, "val_accuracy": NUMBER, "test_accuracy": NUMBER, "test_loss": NUMBER,
                           "train_time_s": NUMBER}],
                "test_accuracy": NUMBER, "test_loss": NUMBER, "test_ci?": INTERVAL, "wall_time_s": NUMBER,
                "mcnemar?": [_MCNEMAR]},
    "seeds?": {"table": [{"seed": WHOLE, "best_val_acc": NUMBER, "test_acc": NUMBER, "test_ci_low": NUMBER,
                          "test_ci_high": NUMBER}],
               "summary": {"val": {"mean": NUMBER, "std": NUMBER},
                           "test": {"mean": NUMBER, "std": NUMBER, "n": COUNT, "min": NUMBER, "max": NUMBER},
                           "single_run": {"seed": WHOLE, "test": _PLACE}, "original_test?": _PLACE,
                           "diverged?": WHOLE},
               "wall_time_s": NUMBER},
    "shift?": {"table": [{"seed": WHOLE, "val_acc": NUMBER, "test_acc": NUMBER, "gap": NUMBER, "val_images": COUNT,
                          "test_images": COUNT}],
               "summary": {"splits": COUNT, "mean_gap": NUMBER, "sd_gap": MAYBE_NUMBER, "val_higher": WHOLE}},
    "drop?": [{"part": TEXT, "points": NUMBER, "level": TEXT, "definition": TEXT}],
    "candidates?": [{"name": TEXT, "settings": TEXT, "lr": NUMBER, "best_val_acc": MAYBE_NUMBER, "diverged": FLAG,
                     "chosen": TEXT}],
    "ablation?": {"table": [{"model": TEXT, "settings": TEXT, "val_accuracy": NUMBER, "test_accuracy": NUMBER,
                             "test_ci_low": NUMBER, "test_ci_high": NUMBER}],
                  "mcnemar": [{**_MCNEMAR, "reference": TEXT}]},
    "budget_rule?": {"chosen": COUNT, "threshold": NUMBER, "best_budget": COUNT, "best_mean": NUMBER, "se": NUMBER,
                     "binomial_se": NUMBER, "seed_sd": NUMBER, "seeds": COUNT, "val_images": COUNT,
                     "margin_images": NUMBER, "shorter_shortfall_images": MAYBE_NUMBER,
                     "table": [{"max_epoch": COUNT, "seeds": COUNT, "mean_val_acc": NUMBER,
                                "images_above_threshold": NUMBER}]},
    "frontier?": {"recipe": TEXT,
                  "candidates": [_CANDIDATE],
                  "chosen": TEXT,
                  "ensemble_choices": [{"members": COUNT, "flip_average": FLAG, "val_acc": NUMBER, "val_loss": NUMBER,
                                        "chosen": FLAG}],
                  "test": [{"model": TEXT, "val_acc": MAYBE_NUMBER, "test_acc": NUMBER, "ci_low": NUMBER,
                            "ci_high": NUMBER, "test_loss": NUMBER, "train_time_s": NUMBER}],
                  "summary": {"single": _TARGET, "ensemble": {**_TARGET, "members": COUNT}, "published": NUMBER,
                              "members_test": {"mean": NUMBER, "std": NUMBER, "min": NUMBER, "max": NUMBER,
                                               "n": COUNT}},
                  "mcnemar": [{**_MCNEMAR, "reference": TEXT}],
                  "wall_time_s": NUMBER},
    "finals?": {"chosen": TEXT, "candidates": [_CANDIDATE], "job": {"runs": COUNT, "train_time_s": NUMBER},
                "member_steps": [{"members": COUNT, "added": TEXT, "val_acc": NUMBER, "val_loss": NUMBER,
                                  "flip_average": FLAG}],
                "members": [TEXT], "flip_average": FLAG,
                "students": [{"temperature": NUMBER, "best_val_acc": NUMBER, "best_val_loss": NUMBER, "chosen": FLAG}],
                "temperature": NUMBER,
                "epochs": {"best_epoch": COUNT, "best_val_acc": NUMBER, "last_val_acc": NUMBER, "epochs": COUNT},
                "test": [{"model": TEXT, "test_acc": NUMBER, "ci_low": NUMBER, "ci_high": NUMBER, "test_loss": NUMBER,
                          "epochs": MAYBE_NUMBER, "train_rows": COUNT, "train_time_s": NUMBER}],
                "summary": {"single": _TARGET, "ensemble": {**_TARGET, "members": COUNT}, "published": NUMBER,
                            "seeds": {"mean": NUMBER, "std": NUMBER, "min": NUMBER, "max": NUMBER, "n": COUNT,
                                      "target": NUMBER, "reached": FLAG}},
                "mcnemar": [{**_MCNEMAR, "reference": TEXT}],
                "class_changes": [{"class": TEXT, "before": NUMBER, "after": NUMBER, "change": NUMBER,
                                   "p_value": NUMBER}]},
    # The second notebook's own (study.how_far): its wall time, and the wins it claims judged on validation.
    "how_far?": {"notebook_wall_time_s": NUMBER},
    "validation?": [{"model": TEXT, "reference": TEXT, "val_accuracy": NUMBER, "lead_images": WHOLE,
                     "p_value": NUMBER, "verdict": TEXT}],
    # Section 10 (study.teacher.results): the job's progress, the pre-registered targets and, once it has finished,
    # the single test read.
    "teacher?": {"runs": COUNT, "done": WHOLE, "finished": FLAG, "targets": {"single": NUMBER, "ensemble": NUMBER},
                 "summary?": {"single": _TARGET, "ensemble": _TARGET,
                              "seeds": {"mean": NUMBER, "std": NUMBER, "min": NUMBER, "max": NUMBER, "n": COUNT},
                              "teacher": {"test_acc": NUMBER, "ci_low": NUMBER, "ci_high": NUMBER}}},
}


def is_number(value):
    """A finite JSON number: NaN and Infinity, which Python's json reads, are no result to print."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


FRACTIONS = ("acc", "accuracy", "ci_low", "ci_high")  # key endings of accuracies and their intervals' ends
INTERVALS = (("test_acc", "ci_low", "ci_high"), ("test_accuracy", "ci_low", "ci_high"),
             ("test_acc", "test_ci_low", "test_ci_high"))  # an accuracy and its interval's ends, in one object


def number_problem(key, value, where):
    """A phrase when ``value``, at ``key``, names an accuracy or an end of its interval (:data:`FRACTIONS`) and is not
    a fraction in [0, 1]; None otherwise."""
    if is_number(value) and key.endswith(FRACTIONS) and not 0 <= value <= 1:
        return f"{where} should be a fraction in [0, 1], not {_json_text(value)}"
    return None


def interval_problem(value, where):
    """A phrase when the object ``value`` holds an accuracy outside its own interval (:data:`INTERVALS`, or
    ``accuracy`` and ``ci``); None otherwise."""
    triples = [(value.get(a), value.get(low), value.get(high)) for a, low, high in INTERVALS]
    if isinstance(value.get("ci"), list) and len(value["ci"]) == 2:
        triples.append((value.get("accuracy"), *value["ci"]))
    for accuracy, low, high in triples:
        if all(map(is_number, (accuracy, low, high))) and not low <= accuracy <= high:
            return (f"{where or 'the file'} holds an accuracy of {accuracy} outside its own interval [{low}, "
                    f"{high}]")
    return None


def choice_problem(results):
    """A phrase when a choice the report names cannot be found: no chosen ensemble (or several) among section 9's
    ``ensemble_choices``, or no step of the finals' member selection with the flip averaging they chose."""
    frontier, finals = results.get("frontier"), results.get("finals")
    if frontier is not None and sum(row["chosen"] for row in frontier["ensemble_choices"]) != 1:
        return "frontier.ensemble_choices should mark exactly one choice as chosen"
    if finals is not None and not any(step["flip_average"] == finals["flip_average"]
                                      for step in finals["member_steps"]):
        return f"finals.member_steps holds no step with flip_average {_json_text(finals['flip_average'])}"
    return None


def _is_whole(value):
    return is_number(value) and float(value).is_integer()


_KIND_CHECKS = {
    NUMBER: is_number,
    MAYBE_NUMBER: lambda v: v is None or is_number(v),
    WHOLE: _is_whole,
    COUNT: lambda v: _is_whole(v) and v > 0,
    FLAG: lambda v: isinstance(v, bool),
    TEXT: lambda v: isinstance(v, str),
    INTERVAL: lambda v: v is None or (isinstance(v, list) and len(v) == 2 and all(map(is_number, v))),
}


def _json_text(value, limit=40):
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def shape_problem(value, shape=None, where=""):
    """The first place where ``value`` (JSON as read) does not have ``shape`` (by default :data:`RESULTS_SHAPE`), as
    a phrase (``"test.accuracy is missing"``), or None when it has."""
    shape = RESULTS_SHAPE if shape is None else shape
    name = where or "the file"
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{name} should be a JSON object, not {_json_text(value)}"
        for key, inner in shape.items():
            key, optional = key.removesuffix("?"), key.endswith("?")
            if key not in value:
                if optional:
                    continue
                return f"{where}.{key} is missing" if where else f"its section {key!r} is missing"
            inside = f"{where}.{key}" if where else key
            problem = shape_problem(value[key], inner, inside) or number_problem(key, value[key], inside)
            if problem:
                return problem
        return interval_problem(value, where) or (None if where else choice_problem(value))
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{name} should be a list, not {_json_text(value)}"
        if not value and MAY_BE_EMPTY not in shape:
            return f"{name} should hold at least one item, not []"
        return next((problem for i, item in enumerate(value)
                     if (problem := shape_problem(item, shape[0], f"{where}[{i}]"))), None)
    return None if _KIND_CHECKS[shape](value) else f"{name} should be {shape}, not {_json_text(value)}"
