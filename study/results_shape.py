"""The shape of ``log/results.json``: what the report (``study.report``) reads from it, checked before anything is
rendered (:func:`shape_problem`)."""

import json

# What the report reads from ``log/results.json``, checked before anything is rendered so that a file of another
# shape (edited, cut short, written by another version) is refused with a sentence rather than a KeyError deep in
# :func:`render`: for each key the kind of its value, a dict for an object (the keys it must hold), a one-item list
# for a list of such items. A key ending in ``?`` may be absent (a file written before that part existed); keys not
# listed are not read, and not checked.
NUMBER, MAYBE_NUMBER, WHOLE, COUNT, FLAG, TEXT, INTERVAL = (
    "a number", "null or a number", "a whole number", "a positive whole number", "true or false", "text",
    "null or two numbers")
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
                                 "chosen_lr": NUMBER, "gain_points": NUMBER, "diverged_lrs": [NUMBER]},
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
}


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
            problem = shape_problem(value[key], inner, f"{where}.{key}" if where else key)
            if problem:
                return problem
        return None
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{name} should be a list, not {_json_text(value)}"
        return next((problem for i, item in enumerate(value)
                     if (problem := shape_problem(item, shape[0], f"{where}[{i}]"))), None)
    return None if _KIND_CHECKS[shape](value) else f"{name} should be {shape}, not {_json_text(value)}"
