"""Section 10 of the study: a convolutional teacher for the MLP (issue "A convolutional teacher"), pre-registered in
``How_far_can_an_MLP_go.ipynb`` before any of its runs. The job trains its runs once, ``make teacher`` (hours on 2
cores; its records are committed and the notebook reads them; ``--status`` says what is done and the time left):

    python -m study.teacher [--jobs 2] [--scheduler tcp://HOST:8786] [--fresh] [--status] [--quick]

1. the teacher's **candidates**, :data:`TEACHER_RECIPE` (``conv.CNN``) with each of :data:`TEACHER_CANDIDATES`'
   changes, on the 54,000 / 6,000 split: the one of best validation numbers (``runs.ranked``) is the teacher;
2. that teacher on **all 60,000** training images, its last epoch's weights kept (nothing is chosen on them);
3. each teacher's **probabilities on every view** of its training images, the views that the students' augmentation
   draws (``solver.views``: 9 shifts by up to a pixel, each also mirrored), computed once and recorded beside the
   teacher's record (:func:`view_probabilities`), so that no student pays for its teacher again;
4. the **students** on the 54,000 images: section 9's chosen recipe (``frontier.choose``) on soft targets, ``(1 -
   w) * one-hot label + w * teacher's probabilities at temperature T`` for the view it draws, one per ``(T, w)`` of
   :data:`STUDENT_GRID`, taught by the teacher of step 1 and compared on validation: the one of best validation
   numbers is chosen;
5. the chosen student on all 60,000 images, taught by the teacher of step 2, once per seed of
   :data:`STUDENT_SEEDS`.

Every run is recorded as it finishes (``study.records``: weights in ``weights/teacher/``, history in
``log/teacher_histories/``, a row of ``log/teacher.csv``), so an interrupted job goes on from there, and a run cut
short resumes from its checkpoint (``log/checkpoints/``). Once the job has finished, the candidates and students
compared on validation alone keep their history and validation probabilities, not their weights. The test set plays
no part in any choice: the notebook reads it once, for the teacher on all 60,000 images and the final students.
"""

import contextlib
import sys
from dataclasses import dataclass
from functools import cache, partial

import numpy as np
import pandas as pd

import mnist_reader
from conv import CNN
from fileio import atomic_write, fingerprint, read_archive
from kernels import moved_images
from solver import views
from study import config, finals, frontier, records, runs, stats
from study.ensemble import Ensemble
from study.records import Records

# The teacher: two stages of 2 x (conv 3x3 - BatchNorm - ReLU) and a 2x2 max pool (32, then 64 channels), a dense head
# of 256 units with dropout, trained with AdamW and a cosine schedule (conv.CNN). Its candidates differ in the one
# thing section 9 found to decide most: how far the training images move.
TEACHER_RECIPE = {"channels": [32, 64], "layers": [784, 256, 10], "batch_norm": True, "dropout": 0.3,
                  "optimizer": "adam", "lr": 1e-3, "L2_lambda": 5e-4, "lr_schedule": "cosine", "max_epoch": 15,
                  "batch_size": 128, "print_iter": 422, "augment_flip": True}
TEACHER_CANDIDATES = {"cnn_shift1_flip": {"augment_shift": 1}, "cnn_shift2_flip": {"augment_shift": 2}}
TEACHER_ALL = "cnn_teacher_all"
# The students' (temperature, weight of the teacher): T spreads the teacher's probabilities over the classes it finds
# alike; w = 0.5 is section 9's weight, w = 0.9 leans on a teacher that is better than the label's one-hot.
STUDENT_GRID = ((1.0, 0.5), (2.0, 0.5), (4.0, 0.5), (1.0, 0.9), (2.0, 0.9), (4.0, 0.9))
STUDENT_SEEDS = (0, 1, 2)
# The targets, pre-registered in How_far_can_an_MLP_go.ipynb before any run of this job (issue "A convolutional
# teacher"): a single pure MLP, and an ensemble of pure MLPs, on the test set.
TARGETS = {"single": 0.925, "ensemble": 0.930}
QUICK = {"recipe": dict(TEACHER_RECIPE, channels=[4, 8], layers=[784, 16, 10], max_epoch=1, print_iter=10),
         "student_layers": [784, 32, 32, 32, 10], "student_epochs": 1, "grid": ((1.0, 0.5), (2.0, 0.9)),
         "seeds": (0, 1)}


def student_name(temperature, weight, seed=None):
    """``"cnn_student_T2_w0.5"`` on the 54,000 images; with ``seed``, the final student on all 60,000:
    ``"cnn_student_all_seed1"``."""
    return f"cnn_student_all_seed{seed}" if seed is not None else f"cnn_student_T{temperature:g}_w{weight:g}"


@dataclass(frozen=True)
class Plan:
    """What the job trains, for a full run or a quick one (tiny networks, one epoch, into a temporary folder)."""

    candidates: dict
    student_recipe: dict
    grid: tuple
    seeds: tuple

    @classmethod
    def of(cls, cfg, student_recipe):
        recipe = QUICK["recipe"] if cfg.quick else TEACHER_RECIPE
        candidates = {name: {**recipe, "seed": cfg.seed, **changes} for name, changes in TEACHER_CANDIDATES.items()}
        if cfg.quick:
            student_recipe = dict(student_recipe, layers=QUICK["student_layers"], max_epoch=QUICK["student_epochs"])
        return cls(candidates, student_recipe, QUICK["grid"] if cfg.quick else STUDENT_GRID,
                   QUICK["seeds"] if cfg.quick else STUDENT_SEEDS)

    @property
    def students(self):
        return [student_name(t, w) for t, w in self.grid]


def teacher_records(cfg):
    """Where section 10's runs are recorded. Every run keeps its weights until the job's last run is recorded; then
    the runs compared on validation alone (the candidates, the students on the 54,000 images), whose validation
    probabilities are recorded (:func:`validation_probabilities`), give them up (``Records.prune``)."""
    seeds = QUICK["seeds"] if cfg.quick else STUDENT_SEEDS
    return Records(cfg.log_dir / "teacher.csv", cfg.log_dir / "teacher_histories", cfg.weights_dir / "teacher",
                   finished=student_name(0, 0, seeds[-1]))


def validation_probabilities(store, models, X_val, record=True):
    """``{name: (N, C) probabilities}`` of ``models`` (``{name: model}``, recorded in ``store``) on the validation
    set, what the job's choices compare: read from their records, or computed from their weights and, with
    ``record``, recorded (``Records.write_probabilities``, under the log's lock), so that they stand in for the
    weights once the job has finished."""
    logged, found = store.read_log(), {}
    for name, model in models.items():
        key = logged[name]["key"]
        recorded = store.read_probabilities(name, key, ("plain",), (len(X_val), model.layers[-1]))
        if recorded is None:
            if not store.weights_path(name).exists():
                raise records.RecordError(f"{name} is recorded without its weights and without its validation "
                                          f"probabilities ({store.probabilities_path(name)}): restore them (from "
                                          "git, say), or train it again (--fresh)")
            single = model if isinstance(model, CNN) else Ensemble([model])
            recorded = {"plain": single.probabilities(X_val)}
            if record:
                with runs.exclusive(store.log_path):
                    store.write_probabilities(name, key, recorded)
        found[name] = recorded["plain"]
    return found


def view_probabilities(store, name, key, teacher, X, shift, flip):
    """The probabilities (N, V, C) of ``teacher``, recorded in ``store`` under ``name`` with record key ``key``, on
    every view of the images ``X`` that an augmentation of ``shift`` and ``flip`` draws (``solver.views``): read from
    ``<history_dir>/<name>.views.npz`` when it holds them for this teacher and these images, else computed (one pass
    of the teacher per view) and recorded first, in float16 (a thousandth of each probability, what a soft target
    needs, at a quarter of the size)."""
    path = store.history_dir / f"{name}.views.npz"
    stamp = np.array([key, *fingerprint(X), str(shift), str(flip)])
    if path.exists():
        arrays = read_archive(path, ("stamp", "probabilities"), "record of a teacher's probabilities on every view",
                              "study.teacher.view_probabilities")
        if arrays["stamp"].tolist() == stamp.tolist():
            return arrays["probabilities"].astype(np.float32)
    moves, flips = views(shift, flip)
    side = int(np.sqrt(X.shape[1]))
    found = np.stack([teacher.probabilities(moved_images(X, side, np.tile(move, (len(X), 1)), np.full(len(X), mirror)))
                      for move, mirror in zip(moves, flips, strict=True)], axis=1).astype(np.float16)
    atomic_write(path, lambda f: np.savez_compressed(f, stamp=stamp, probabilities=found))
    return found.astype(np.float32)


@dataclass(frozen=True)
class ViewTaught:
    """A student's data whose training labels become soft targets for every view (N, V, C) only when it trains:
    ``(1 - weight) * one-hot + weight * softened`` teacher's probabilities (``finals.soft_targets``). Its record key
    names the teacher by its record key and hashes the labels, not the targets (see ``finals.Taught``)."""

    data: tuple
    probabilities: callable  # () -> the teacher's probabilities (N, V, C) on the training images
    teacher_key: str
    temperature: float
    weight: float

    def described(self):
        return {"arrays": fingerprint(*self.data), "teacher": self.teacher_key, "views": True,
                "temperature": float(self.temperature), "weight": float(self.weight)}

    def arrays(self):
        X_train, y_train, X_val, y_val = self.data
        taught = self.probabilities()
        n, n_views, classes = taught.shape
        labels = np.repeat(y_train, n_views)
        targets = finals.soft_targets(taught.reshape(-1, classes), labels, self.temperature, self.weight)
        return X_train, targets.reshape(n, n_views, classes).astype(np.float32), X_val, y_val


def train_teacher(cfg, data, n_jobs=1, fresh=False, train=True, progress=True):
    """Section 10's runs on ``data`` (``X_train, y_train, X_val, y_val``), each read from its record or, with
    ``train``, trained and recorded first: a dict of the candidates, the chosen teacher, the teacher on all 60,000,
    the students, the chosen ``(T, w)`` and the final students (see the module's docstring)."""
    store, checkpoints = teacher_records(cfg), cfg.log_dir / "checkpoints"
    fit = partial(recorded, store, n_jobs=n_jobs, fresh=fresh, train=train, progress=progress,
                  checkpoint_dir=checkpoints)
    plan = Plan.of(cfg, section9_choice(cfg, data).config())
    candidates = fit(plan.candidates, data, "teacher candidates")
    compared = validation_probabilities(store, candidates, data[2], record=train)
    chosen = frontier.choose(candidates)
    everything = finals.all_images(data)
    key = store.read_log()[chosen]["key"]
    shift, flip = plan.student_recipe["augment_shift"], plan.student_recipe["augment_flip"]
    # One read (or computation) of the teacher's probabilities, however many of its students train in this process.
    probabilities = cache(partial(view_probabilities, store, chosen, key, candidates[chosen], data[0], shift, flip))
    named = {TEACHER_ALL: dict(plan.candidates[chosen], seed=cfg.seed)}
    named_data = {TEACHER_ALL: everything}
    for temperature, weight in plan.grid:
        named[student_name(temperature, weight)] = plan.student_recipe
        named_data[student_name(temperature, weight)] = ViewTaught(data, probabilities, key, temperature, weight)
    trained = fit(named, named_data, "teacher on 60,000 and students")
    students = {(t, w): trained[student_name(t, w)] for t, w in plan.grid}
    compared.update(validation_probabilities(store, {student_name(t, w): students[t, w] for t, w in plan.grid},
                                             data[2], record=train))
    best = frontier.choose({student_name(t, w): model for (t, w), model in students.items()})
    temperature, weight = next((t, w) for t, w in plan.grid if student_name(t, w) == best)
    teacher_all, all_key = trained[TEACHER_ALL], store.read_log()[TEACHER_ALL]["key"]
    taught_all = partial(view_probabilities, store, TEACHER_ALL, all_key, teacher_all, everything[0], shift, flip)
    final = fit({student_name(temperature, weight, seed): dict(plan.student_recipe, seed=seed) for seed in plan.seeds},
                ViewTaught(everything, taught_all, all_key, temperature, weight), "final students")
    if train:  # the job has finished: the runs compared on validation alone keep their probabilities, not weights
        store.prune([*candidates, *compared])
    return {"candidates": candidates, "chosen": chosen, "teacher_all": teacher_all, "students": students,
            "temperature": temperature, "weight": weight, "finals": final, "student_recipe": plan.student_recipe,
            "validation_probabilities": compared}


def validation_choices(found, y_val):
    """The job's two choices on validation, from the runs' recorded validation probabilities, each with McNemar's
    paired test on the validation images between the chosen run and every other (``stats.mcnemar_table``):
    ``{"teacher": table, "students": table}``. A lead the test cannot see (not ``significant``) is a tie: the rule
    (``runs.ranked``) still picks one, but nothing says it is better."""
    predicted = {name: p.argmax(axis=1) for name, p in found["validation_probabilities"].items()}
    teachers = {name: predicted[name] for name in found["candidates"]}
    students = {student_name(t, w): predicted[student_name(t, w)] for t, w in found["students"]}
    chosen_student = student_name(found["temperature"], found["weight"])
    return {"teacher": stats.mcnemar_table(y_val, teachers, found["chosen"]),
            "students": stats.mcnemar_table(y_val, students, chosen_student)}


def on_test(found, X_test, y_test, taught_by_mlp, undistilled, targets=TARGETS):
    """The single read of the test set, once every choice is made (the study's third look at it): the teacher on
    all 60,000 images, each final student, and the students' ensemble (their mean probabilities), each with its
    exact 95% interval; the targets judged (the single one on the first seed, the seeds' mean beside it); McNemar's
    tests of the first seed against section 9's MLP-taught student (``taught_by_mlp``) and its undistilled recipe
    (``undistilled``), both models, and of the ensemble against the teacher. ``(table, summary, tests)``."""
    students = found["finals"]
    table, predictions = finals.measure_on_test(students, Ensemble(list(students.values())), X_test, y_test)
    predictions["CNN teacher"] = found["teacher_all"].predict(X_test)
    measured = stats.accuracy(y_test, predictions["CNN teacher"])
    table = pd.concat([table.drop(columns="val_acc"), pd.DataFrame([{
        "model": "CNN teacher", "test_acc": measured["accuracy"], "ci_low": measured["ci_low"],
        "ci_high": measured["ci_high"], "epochs": found["teacher_all"].epoch,
        "train_time_s": found["teacher_all"].train_time_s}])], ignore_index=True)
    rows, first = table.set_index("model"), next(iter(students))
    seeds = stats.spread(rows.loc[list(students), "test_acc"])
    summary = {"single": finals.against_target(rows, first, targets["single"]),
               "seeds": dict(seeds, target=targets["single"], reached=bool(seeds["mean"] >= targets["single"])),
               "ensemble": finals.against_target(rows, "ensemble", targets["ensemble"]),
               "teacher": {key: float(rows.loc["CNN teacher", key]) for key in ("test_acc", "ci_low", "ci_high")}}
    named = {"MLP-taught student (section 9)": taught_by_mlp.predict(X_test),
             "undistilled recipe (section 9)": undistilled.predict(X_test), first: predictions[first]}
    tests = pd.concat([
        stats.mcnemar_table(y_test, named, "MLP-taught student (section 9)").assign(
            reference="MLP-taught student (section 9)"),
        stats.mcnemar_table(y_test, named, "undistilled recipe (section 9)").assign(
            reference="undistilled recipe (section 9)"),
        stats.mcnemar_table(y_test, {"CNN teacher": predictions["CNN teacher"], "ensemble": predictions["ensemble"]},
                            "CNN teacher").assign(reference="CNN teacher")], ignore_index=True)
    return table, summary, tests


def results(table, choices=None, measured=None):
    """Section 10's part of ``log/results.json`` (``study.how_far``): how far the job had come (:func:`status`'s
    ``table``) and the pre-registered targets; once it has finished, the choices on validation
    (:func:`validation_choices`) and the single test read (:func:`on_test`'s ``(table, summary, tests)``)."""
    part = {"runs": len(table), "done": int((table["state"] == "done").sum()), "finished": finished(table),
            "targets": dict(TARGETS)}
    if measured is not None:
        test, summary, tests = measured
        part.update(choices=choices, test=test, summary=summary, mcnemar=tests)
    return part


def recorded(store, named_settings, data, desc, n_jobs=1, fresh=False, train=True, progress=True,
             checkpoint_dir=None):
    """The runs of ``named_settings`` on ``data``, read from their records in ``store`` or, with ``train``, trained
    and recorded first (``records.fit_or_read``); without ``train``, a run with no record is a FileNotFoundError
    that says how to make it."""
    missing = [] if train else store.missing(named_settings, data)
    if missing:
        raise FileNotFoundError(f"section 10's runs {missing} have no record in {store.log_path} for these settings "
                                "and data: train them with `make teacher` (hours on 2 cores; --status says how many)")
    return records.fit_or_read(named_settings, data, store, n_jobs=n_jobs, fresh=fresh, progress=progress, desc=desc,
                               checkpoint_dir=checkpoint_dir)


def section9_choice(cfg, data):
    """Section 9's chosen candidate (``frontier.choose`` over both rounds' candidates, read from their records): the
    students' recipe, and how long it took an epoch."""
    candidates, _, _ = frontier.train_frontier(cfg, data, train=False, progress=False)
    candidates.update(frontier.train_round_two(cfg, data, train=False, progress=False))
    return candidates[frontier.choose(candidates)]


def status(cfg, data):
    """The job's runs, done, in progress (a checkpoint) or to do, and a sentence with the time left at the epoch
    times measured so far: the runs that wait on a choice are counted as the most they can be."""
    store, checkpoints = teacher_records(cfg), cfg.log_dir / "checkpoints"
    logged, recipe = store.read_log(), section9_choice(cfg, data)
    plan = Plan.of(cfg, recipe.config())
    planned = {**{name: s["max_epoch"] for name, s in plan.candidates.items()},
               TEACHER_ALL: next(iter(plan.candidates.values()))["max_epoch"],
               **dict.fromkeys(plan.students, plan.student_recipe["max_epoch"]),
               **{student_name(0, 0, seed): plan.student_recipe["max_epoch"] for seed in plan.seeds}}
    table = pd.DataFrame([dict(frontier.run_state(store, checkpoints, name, logged.get(name), None, epochs),
                               kind="student" if "student" in name else "teacher") for name, epochs in planned.items()])
    per_epoch = table.groupby("kind")["s_per_epoch"].transform("median")
    if not cfg.quick:  # a student not yet timed takes as long as section 9's recipe, the same network, took
        per_epoch = per_epoch.fillna(table["kind"].map({"student": recipe.train_time_s / max(recipe.epoch, 1)}))
    left = ((table["of"] - table["epochs"]) * table["s_per_epoch"].fillna(per_epoch)).sum()
    unknown = table["s_per_epoch"].isna() & per_epoch.isna()
    sentence = (f"{(table['state'] == 'done').sum()} of {len(table)} runs done; about {left / 3600:.1f} hours of "
                "training left at the epoch times measured so far")
    if unknown.any():
        sentence += f", not counting {unknown.sum()} runs of a kind not yet timed"
    return table, sentence


def finished(table):
    """Whether :func:`status`'s ``table`` has every run of the job done: then, and only then, every choice is made
    and the test set may be read."""
    return bool((table["state"] == "done").all())


def main(argv=None):
    args = frontier.job_arguments(argv, __doc__, "section 10")
    cfg = config.study_config(quick=args.quick)
    X_train, y_train, X_val, y_val, _, _ = config.subsample(
        mnist_reader.load_fashion_mnist(seed=cfg.split_seed, val_fraction=cfg.val_fraction), cfg)
    data = (X_train, y_train, X_val, y_val)
    if args.status:
        table, sentence = status(cfg, data)
        print(table.round(1).to_string(index=False))
        print(sentence)
        return
    with contextlib.ExitStack() as stack:
        frontier.on_cluster(stack, args.scheduler)
        try:
            found = train_teacher(cfg, data, n_jobs=args.jobs, fresh=args.fresh)
        except records.RecordError as error:
            print(f"study.teacher: {error}", file=sys.stderr)
            raise SystemExit(2) from None
    print(f"the teacher chosen on validation: {found['chosen']}; the students' temperature and weight: "
          f"T = {found['temperature']:g}, w = {found['weight']:g}")


if __name__ == "__main__":
    main()
