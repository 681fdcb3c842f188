"""Section 9's final models, which ``make frontier`` trains after the candidates of both rounds (issue "Past the
frontier, round two"). Every choice is made on the validation set, from the candidates' records; the final models
then train on all 60,000 training images, so nothing is chosen on them, and the notebook measures each once on the
test set.

1. **The single recipe**: the candidate with the best validation numbers (``frontier.choose``), trained again on
   all 60,000 images for its whole schedule (its ``max_epoch``: the candidates' curves show where in it the best
   validation check fell, :func:`epoch_evidence`), keeping its last weights (or their moving average), once for each
   of ``cfg.final_seeds``.
2. **The ensemble's members**: recipes that differ by more than a seed, chosen among the candidates by greedy
   forward selection on validation, with or without flip averaging (:func:`ensemble_members`), each trained on all
   60,000 images (the chosen recipe's seed 0 is already among the finals).
3. **Distillation**: the chosen recipe trained on soft targets, ``(1 - cfg.distill_weight) * one-hot label +
   cfg.distill_weight * teacher's probabilities at temperature T`` (:func:`soft_targets`), the teacher being an
   ensemble. T is chosen on validation among ``cfg.distill_temperatures``, with the candidates' ensemble teaching on
   the 54,000 training images; the student is then trained on all 60,000 with the final members' ensemble as its
   teacher. The teacher's probabilities are computed once per image (a shifted or mirrored image keeps its image's
   targets), a small part of one student epoch, and only when a student trains: its record's key names its teacher
   (:class:`Taught`).
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fileio import fingerprint
from study import beyond, config, records, runs, stats
from study.ensemble import Ensemble, scores

WIDE = "wide network (section 7)"
STUDENT = config.FINAL_STUDENT
VIEWS = {"plain": False, "flip_average": True}  # a candidate's validation probabilities, by flip averaging


def all_images(data):
    """``(X, y, None, None)``: the training and the validation images together, all 60,000, with no validation
    set."""
    X_train, y_train, X_val, y_val = data
    return np.concatenate([X_train, X_val]), np.concatenate([y_train, y_val]), None, None


def epoch_evidence(model):
    """Where in its schedule a candidate's best validation check fell, against its last: ``{"best_epoch",
    "best_val_acc", "last_val_acc", "epochs"}``. A final model trains the whole schedule and keeps its last weights,
    which this shows costs little on validation."""
    history = model.history
    best = history.loc[history["val_acc"].idxmax()]
    return {"best_epoch": int(best["epoch"]), "best_val_acc": float(best["val_acc"]),
            "last_val_acc": float(history["val_acc"].iloc[-1]), "epochs": int(model.epoch)}


def candidate_probabilities(store, candidates, X_val, tested=(), record=True):
    """``{flip_average: {name: (N, C) probabilities}}``: each of ``candidates`` (``{name: model}``, recorded in
    ``store``) alone on the validation set, without and with flip averaging, what the ensemble's selection compares.
    A candidate the study does not measure on the test set (not among ``tested``) is compared on validation alone:
    its probabilities are read from its record (checked: ``Records.read_probabilities``), or computed from its
    weights and, with ``record``, recorded under the log's lock (``Records.write_probabilities``); they stand in for
    its weights once the job is finished."""
    logged, found = store.read_log(), {False: {}, True: {}}
    unknown = [name for name in candidates if name not in logged]
    if unknown:
        raise records.RecordError(f"the candidates {unknown} have no row in {store.log_path}: name candidates that "
                                  "the job has recorded (config.FRONTIER_CANDIDATES, config.FRONTIER_ROUND_TWO), or "
                                  "train them first (make frontier)")
    for name, model in candidates.items():
        key, shape = logged[name]["key"], (len(X_val), model.layers[-1])
        recorded = None if name in tested else store.read_probabilities(name, key, tuple(VIEWS), shape)
        if recorded is None:
            if not store.weights_path(name).exists():
                raise records.RecordError(f"{name} is recorded without its weights and without its validation "
                                          f"probabilities ({store.probabilities_path(name)}): restore them (from "
                                          "git, say), or train it again (--fresh)")
            recorded = {view: Ensemble([model], flip_average=flip).probabilities(X_val) for view, flip in VIEWS.items()}
            if name not in tested and record:
                with runs.exclusive(store.log_path):
                    store.write_probabilities(name, key, recorded)
        for view, flip in VIEWS.items():
            found[flip][name] = recorded[view]
    return found


def final_names(cfg, chosen, members):
    """The names of section 9's final runs, in the order they train, for the candidate ``chosen`` and the ensemble's
    ``members`` (:func:`ensemble_members`): the single recipe's seeds, the other members, distillation's students,
    the final student."""
    return [*(f"{chosen}_all_seed{seed}" for seed in cfg.final_seeds),
            *(f"{name}_all_seed0" for name in members if name != chosen),
            *map(config.student_name, cfg.distill_temperatures), STUDENT]


def ensemble_members(probabilities, y_val, max_members):
    """The ensemble's recipes and whether it averages each image with its mirror image, both chosen on validation
    from the candidates' ``probabilities`` (:func:`candidate_probabilities`): :func:`greedy_members` without and with
    flip averaging, and the better of the two ensembles by ``runs.ranked``. Returns ``(names, flip_average,
    steps)``, ``steps`` the table of both selections."""
    found = {flip: greedy_members(probabilities[flip], y_val, max_members) for flip in (False, True)}
    steps = pd.concat([table.assign(flip_average=flip) for flip, (_, table) in found.items()], ignore_index=True)
    last = steps.groupby("flip_average").tail(1).rename(columns={"val_acc": "best_val_acc",
                                                                 "val_loss": "best_val_loss"})
    flip = bool(last.loc[runs.ranked(last.assign(diverged=False)).index[0], "flip_average"])
    return found[flip][0], flip, steps


def greedy_members(probabilities, y_val, max_members):
    """Greedy forward selection on the validation set from each candidate's ``probabilities`` (``{name: (N, C)}``):
    start from the best candidate alone, then add, one at a time, the candidate whose joining gives the averaged
    probabilities the best validation numbers (``runs.ranked``: accuracy, then loss), while it raises the accuracy
    and the ensemble has fewer than ``max_members``. Returns the names chosen, in order, and the table of every
    step's choice."""
    chosen, rows, best_acc = [], [], -1.0
    while len(chosen) < max_members:
        tried = []
        for name in probabilities:
            if name not in chosen:
                mean = np.mean([probabilities[n] for n in [*chosen, name]], axis=0)
                tried.append((name, *scores(mean, y_val)))
        table = pd.DataFrame(tried, columns=["candidate", "best_val_acc", "best_val_loss"]).assign(diverged=False)
        name, acc, loss = tried[runs.ranked(table).index[0]]
        if chosen and acc <= best_acc:
            break
        chosen.append(name)
        best_acc = acc
        rows.append({"members": len(chosen), "added": name, "val_acc": acc, "val_loss": loss})
    return chosen, pd.DataFrame(rows)


def soft_targets(probabilities, y, temperature, weight):
    """Target distributions (N, C) for rows of labels ``y``: ``(1 - weight)`` on the label and ``weight`` times a
    teacher's ``probabilities`` (N, C) softened by ``temperature`` (``p ** (1 / T)``, normalised: T > 1 spreads them
    over the classes the teacher finds alike)."""
    check_distillation(temperature, weight)
    if probabilities.ndim != 2 or len(probabilities) != len(y) or y.max(initial=0) >= probabilities.shape[1]:
        raise ValueError(f"the teacher's probabilities have shape {probabilities.shape}, which does not fit "
                         f"{len(y)} labels of classes up to {y.max(initial=0)}: its members must be trained on the "
                         "student's classes, one row per training image")
    softened = np.exp(np.log(np.maximum(probabilities, np.finfo(np.float64).tiny)) / temperature)
    softened /= softened.sum(axis=1, keepdims=True)
    return (1 - weight) * np.eye(probabilities.shape[1])[y] + weight * softened


def check_distillation(temperature, weight):
    """ValueError naming the setting unless distillation's ``temperature`` is a positive finite number
    (``cfg.distill_temperatures``) and its ``weight`` a number in [0, 1] (``cfg.distill_weight``)."""
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 < temperature < math.inf:
        raise ValueError(f"distillation's temperature must be a positive finite number (cfg.distill_temperatures: "
                         f"1 keeps the teacher's probabilities, 2 or 4 soften them), got {temperature!r}")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
        raise ValueError(f"distillation's weight must be a number in [0, 1] (cfg.distill_weight: the teacher's share "
                         f"of each target, the label has the rest), got {weight!r}")


def check_teacher(teacher, X):
    """ValueError unless every member of ``teacher`` (an ``Ensemble``) was trained on data of the range of ``X`` (each
    end within a tenth of its width, when the member recorded its range): a teacher trained on other input scaling
    reads the student's images as something else (``doors.check_range`` lets through data inside a wider range)."""
    low, high = float(X.min()), float(X.max())
    for k, member in enumerate(teacher.members, start=1):
        if member.data_range is not None:
            trained_low, trained_high = member.data_range
            slack = (trained_high - trained_low) / 10
            if abs(low - trained_low) > slack or abs(high - trained_high) > slack:
                raise ValueError(f"the teacher's member {k} was trained on data in [{trained_low:g}, "
                                 f"{trained_high:g}], the student's images span [{low:g}, {high:g}]: distil from "
                                 "members trained on images scaled as the student's (pixels divided by 255, say)")


class Teacher:
    """An ensemble that teaches several students on the same training images (distillation's temperatures): its
    probabilities on them are computed for the first student that trains and kept for the others, one pass however
    many students it has. ``missing`` lists the weights archives of members read back without them (their record
    kept their validation probabilities instead): such a teacher cannot teach, and a student that must train says
    so."""

    def __init__(self, ensemble, missing=()):
        self.ensemble, self.flip_average, self.missing = ensemble, ensemble.flip_average, tuple(missing)
        self.taught = None  # (the images, the probabilities on them)

    def probabilities(self, X):
        if self.missing:
            raise records.RecordError("a student must train, but the weights of its teacher's members gave way to "
                                      "their validation probabilities once the job had finished: restore "
                                      f"{', '.join(map(str, self.missing))} (from git, say), or train the job again "
                                      "(--fresh)")
        if self.taught is None or self.taught[0] is not X:
            self.taught = (X, self.ensemble.probabilities(X))
        return self.taught[1]


@dataclass(frozen=True)
class Taught:
    """A student's data: ``data`` (``X_train, y_train, X_val, y_val``, labels) whose training labels become
    :func:`soft_targets` from ``teacher``'s probabilities only when the student trains (:meth:`arrays`).

    Its record's key (:meth:`described`, through ``runs.run_key``) names the teacher by its members' record keys
    (``teacher_keys``), flip averaging, the temperature and the weight, and hashes the labels, not the targets: the
    teacher's probabilities are float64 products whose last bits the BLAS kernels set, and another processor's
    kernels (OpenBLAS's Haswell and SkylakeX) move them, while the student recorded is the same run. A student read
    back from its record then costs no pass of its teacher over the training images."""

    data: tuple
    teacher: Ensemble | Teacher
    teacher_keys: tuple
    temperature: float
    weight: float

    def __post_init__(self):
        check_distillation(self.temperature, self.weight)

    def described(self):
        return {"arrays": fingerprint(*self.data), "teacher": list(self.teacher_keys),
                "flip_average": self.teacher.flip_average, "temperature": float(self.temperature),
                "weight": float(self.weight)}

    def arrays(self):
        X_train, y_train, X_val, y_val = self.data
        check_teacher(getattr(self.teacher, "ensemble", self.teacher), X_train)
        targets = soft_targets(self.teacher.probabilities(X_train), y_train, self.temperature, self.weight)
        return X_train, targets, X_val, y_val


def train_finals(cfg, data, candidates, chosen, fit, tested=()):
    """The final models of section 9 from the ``candidates`` of both rounds (``{name: model}``), ``chosen`` the one
    of best validation numbers, and ``data`` (``X_train, y_train, X_val, y_val``), each read from its record or
    trained first by ``fit(named_settings, data, desc)`` (``frontier.recorded``, ``data`` a dict by name when the
    runs differ in it): a dict of what was chosen and trained (see the module's docstring). ``tested`` names the
    candidates that the study measures on the test set (the first round's members): they keep their weights, and the
    others, once the final student is recorded, only their validation probabilities (:func:`candidate_probabilities`).

    Every run that depends on the candidates alone goes in one batch, so that two at a time keep both cores busy to
    the end: the single recipe's seeds first, then the ensemble's other members, then distillation's students on
    the 54,000; the final student, whose teacher is the final members' ensemble, comes last."""
    _, _, X_val, y_val = data
    store = cfg.frontier_records
    if chosen not in candidates:
        raise ValueError(f"the chosen candidate {chosen!r} is not among the candidates {list(candidates)}: choose it "
                         "among them (frontier.choose)")
    settings = {name: model.config() for name, model in candidates.items()}
    probabilities = candidate_probabilities(store, candidates, X_val, tested)
    names, flip, steps = ensemble_members(probabilities, y_val, cfg.ensemble_max_members)
    everything = all_images(data)
    teacher = Teacher(Ensemble([candidates[name] for name in names], flip_average=flip),
                      missing=[path for path in map(store.weights_path, names) if not path.exists()])
    keys = recorded_keys(cfg, names)
    named_settings = {**{f"{chosen}_all_seed{seed}": dict(settings[chosen], seed=seed) for seed in cfg.final_seeds},
                      **{f"{name}_all_seed0": settings[name] for name in names if name != chosen}}
    named_data = dict.fromkeys(named_settings, everything)
    for temperature in cfg.distill_temperatures:
        named_settings[config.student_name(temperature)] = settings[chosen]
        named_data[config.student_name(temperature)] = Taught(data, teacher, keys, temperature, cfg.distill_weight)
    trained = fit(named_settings, named_data, "section 9's finals")
    finals = {f"{chosen}_all_seed{seed}": trained[f"{chosen}_all_seed{seed}"] for seed in cfg.final_seeds}
    members = {name: trained[f"{name}_all_seed0"] for name in names}
    students = {temperature: trained[config.student_name(temperature)] for temperature in cfg.distill_temperatures}
    best = beyond.best_on_validation(list(students.values()))
    temperature = next(t for t, model in students.items() if model is best)
    final_teacher = Ensemble(list(members.values()), flip_average=flip)
    taught = Taught(everything, final_teacher, recorded_keys(cfg, [f"{name}_all_seed0" for name in names]),
                    temperature, cfg.distill_weight)
    student = fit({STUDENT: settings[chosen]}, taught, "final student")[STUDENT]
    store.prune(candidates)  # the job is finished: the candidates compared on validation alone give up their weights
    return {"chosen": chosen, "epochs": epoch_evidence(candidates[chosen]), "finals": finals,
            "member_steps": steps, "members": members, "ensemble": final_teacher, "students": students,
            "temperature": temperature, "student": student, "train_rows": len(everything[0])}


def recorded_keys(cfg, names):
    """The record keys (``runs.run_key``) of section 9's runs ``names``, from ``cfg.frontier_records``' log."""
    logged = cfg.frontier_records.read_log()
    return tuple(logged[name]["key"] for name in names)


def students_table(found):
    """Distillation's students on validation, one row per temperature, and which one chose the final student's."""
    return pd.DataFrame([{"temperature": t, "best_val_acc": model.best_val_acc, "best_val_loss": model.best_val_loss,
                          "chosen": t == found["temperature"]} for t, model in found["students"].items()])


# -- measured once on the test set ----------------------------------------------------------------------------------


def measure_on_test(models, ensemble, X_test, y_test, ensemble_val_acc=None):
    """Each model's and the ensemble's test numbers, each measured once: ``(table, predictions)``, one row per model
    (validation and test accuracy, the test accuracy's exact 95% interval, test loss, epochs, training time) and
    ``{name: predicted labels}``; the ensemble's row is named ``"ensemble"``, its validation accuracy
    ``ensemble_val_acc`` (the one that chose it). A model trained with no validation set has none (None)."""
    rows, predictions = [], {}
    for name, model in [*models.items(), ("ensemble", ensemble)]:
        single = model is not ensemble
        probabilities = (Ensemble([model]) if single else model).probabilities(X_test)
        predictions[name] = probabilities.argmax(axis=1)
        measured = stats.accuracy(y_test, predictions[name])
        val_acc = model.best_val_acc if single else ensemble_val_acc
        rows.append({"model": name, "seed": model.seed if single else None,
                     "val_acc": None if val_acc is None or math.isnan(val_acc) else val_acc,
                     "test_acc": measured["accuracy"], "ci_low": measured["ci_low"], "ci_high": measured["ci_high"],
                     "test_loss": scores(probabilities, y_test)[1], "epochs": model.epoch if single else None,
                     "train_time_s": model.train_time_s if single else sum(m.train_time_s for m in model.members)})
    return pd.DataFrame(rows).astype({"seed": "Int64", "epochs": "Int64"}), predictions


def against_target(rows, name, target):
    """Model ``name``'s test accuracy in ``rows`` (a test table indexed by model) with its interval, and whether it
    reaches ``target``: at least the target."""
    row = rows.loc[name]
    return {"model": name, "test_acc": float(row["test_acc"]), "ci_low": float(row["ci_low"]),
            "ci_high": float(row["ci_high"]), "target": target, "reached": bool(row["test_acc"] >= target)}


def on_test(found, X_test, y_test):
    """The final models of :func:`train_finals`'s ``found``, each measured once on the test set: the single
    recipe's seeds, the distilled student, and the ensemble of the final members, with the training rows each saw
    (all of them: none was kept for validation, so none has a validation accuracy). ``(table, predictions)`` as
    :func:`measure_on_test`'s."""
    table, predictions = measure_on_test({**found["finals"], STUDENT: found["student"]}, found["ensemble"],
                                         X_test, y_test)
    return table.drop(columns="val_acc").assign(train_rows=found["train_rows"]), predictions


def summary(table, found, targets=config.FRONTIER_TARGETS):
    """What :func:`on_test`'s ``table`` says about the targets: the distilled student, the single MLP that the
    issue's route to the single target names; the mean and spread of the single recipe's seeds, the stronger
    claim; the ensemble; each with whether it reaches its target (:func:`against_target`)."""
    rows = table.set_index("model")
    seeds = stats.spread(rows.loc[list(found["finals"]), "test_acc"])
    return {"single": against_target(rows, STUDENT, targets["single"]),
            "seeds": dict(seeds, target=targets["single"], reached=bool(seeds["mean"] >= targets["single"])),
            "ensemble": dict(against_target(rows, "ensemble", targets["ensemble"]), members=len(found["members"])),
            "published": config.PUBLISHED_MLP_ACCURACY}


def describe_summary(found):
    """:func:`summary` in three sentences."""
    single, seeds, ensemble = found["single"], found["seeds"], found["ensemble"]

    def verdict(reached):
        return "reaches" if reached else "falls short of"

    return (f"the distilled MLP: test accuracy {single['test_acc']:.4f} (95% CI "
            f"{stats.format_ci(single['ci_low'], single['ci_high'])}); it {verdict(single['reached'])} the target "
            f"{single['target']:g}; the best published pure MLP: {found['published']:.4f}\n"
            f"the recipe's {seeds['n']} seeds: mean {seeds['mean']:.4f} +- {seeds['std']:.4f} ({seeds['min']:.4f} "
            f"to {seeds['max']:.4f}); the mean {verdict(seeds['reached'])} the target {seeds['target']:g}\n"
            f"the ensemble of {ensemble['members']} recipes: test accuracy {ensemble['test_acc']:.4f} (95% CI "
            f"{stats.format_ci(ensemble['ci_low'], ensemble['ci_high'])}); it {verdict(ensemble['reached'])} the "
            f"target {ensemble['target']:g}")


def significance(y_test, predictions, wide_predictions, found):
    """McNemar's exact tests on the test set: the recipe's seed 0, the distilled student and the ensemble against
    section 7's wide network; the student and the ensemble against seed 0 (what distillation and the ensemble add
    to the recipe); the ensemble against the student. A ``reference`` column names each one's."""
    seed0, student = next(iter(found["finals"])), "distilled student"
    named = {seed0: predictions[seed0], student: predictions[STUDENT], "ensemble": predictions["ensemble"]}
    tables = [stats.mcnemar_table(y_test, {WIDE: wide_predictions, **named}, WIDE).assign(reference=WIDE),
              stats.mcnemar_table(y_test, named, seed0).assign(reference=seed0),
              stats.mcnemar_table(y_test, {student: named[student], "ensemble": named["ensemble"]}, student)
              .assign(reference=student)]
    return pd.concat(tables, ignore_index=True)


def results(found, candidates, table, measured, tests, changes, job_log):
    """The finals' part of ``log/results.json``: the candidates of both rounds (``frontier.choice_table``), the
    ensemble's selection, distillation's temperatures, the epochs' evidence, each final model's test numbers with
    its training rows and epochs, the targets (:func:`summary`), McNemar's tests, the class changes, and what the
    whole job trained (``job_log``: the rows of ``log/frontier.csv`` by name): its runs and their training time."""
    job = {"runs": len(job_log), "train_time_s": float(sum(row["train_time_s"] for row in job_log.values()))}
    return {"chosen": found["chosen"], "candidates": candidates, "member_steps": found["member_steps"], "job": job,
            "members": list(found["members"]), "flip_average": bool(found["ensemble"].flip_average),
            "students": students_table(found), "temperature": found["temperature"], "epochs": found["epochs"],
            "test": table, "summary": measured, "mcnemar": tests, "class_changes": changes}

