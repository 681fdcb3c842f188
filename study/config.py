"""The settings of the study notebook, ``Fashion_mnist_model.ipynb``: a full run, or a quick one.

The notebook asks :func:`study_config` for everything a run depends on besides the data: the grid, the training
recipe, successive halving's schedule, the learning-rate follow-up, section 7's contenders, the seeds of section 8,
and where the outputs go. This module sits at the bottom of the ``study`` package and imports nothing of it.

A full run writes into the repository (``log/``, ``weights/``, ``figures/``). A quick run (the notebook's parameter
``QUICK = True``, ``make run QUICK=1``), used by the tests, trains a handful of tiny models for two epochs on a
subsample and writes into a temporary folder, so it never touches the repository's results.
"""

import tempfile
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent

# Section 7's wide network. PyTorch reached 0.9050 test accuracy with this recipe, trained 60 epochs, on the study's
# split (issue "Beyond the original study"). Its max_epoch is the choice of ``python -m study.budget`` on the
# validation set (log/wide_budget.csv), which tests/test_budget.py holds it to.
WIDE_RECIPE = {"layers": [784, 1024, 1024, 10], "optimizer": "adam", "lr": 1e-3, "L2_lambda": 1e-4, "dropout": 0.3,
               "lr_schedule": "cosine", "max_epoch": 40, "batch_size": 128}

# Section 9's network: three hidden layers of 1024 units with batch normalisation before each ReLU and dropout after
# it, AdamW and a cosine schedule, as the anchor of the issue "How far can an MLP go?" (Nokland and Eidnes, 2019:
# 0.9163, the best published pure-MLP test accuracy on Fashion-MNIST) trains it, for the epochs 2 cores can afford.
# Its candidates differ in what validation has to decide; its members, chosen recipe, by their seed.
FRONTIER_RECIPE = {"layers": [784, 1024, 1024, 1024, 10], "batch_norm": True, "dropout": 0.2, "optimizer": "adam",
                   "lr": 1e-3, "L2_lambda": 1e-4, "lr_schedule": "cosine", "max_epoch": 100, "batch_size": 128,
                   "print_iter": 422}
FRONTIER_CANDIDATES = {"no_augmentation": {}, "shift1_flip": {"augment_shift": 1, "augment_flip": True}}
FRONTIER_SEEDS = (1, 2, 3, 4)  # the members besides the chosen candidate, which has seed 0
# Section 9's second round of candidates (issue "Past the frontier, round two"), the same 100 epochs on the same split:
# the anchor's own recipe as its public script trains it (dropout 0.025, Adam at 5e-4 without weight decay, the rate
# times 0.25 after epochs 100, 150, 175 and 188 of 200, here scaled to 100, 2-pixel shifts and flips, standardised
# inputs), then the round-one recipe with 2-pixel shifts, with label smoothing, with a moving average of its weights
# (decay 0.9995: about the last 2,000 batches, 5 epochs), and four hidden layers instead of three.
FRONTIER_SHIFT1_FLIP = {"augment_shift": 1, "augment_flip": True}
FRONTIER_ROUND_TWO = {
    "anchor_recipe": {"dropout": 0.025, "lr": 5e-4, "L2_lambda": 0.0, "lr_schedule": "milestones",
                      "decay_epochs": [50, 75, 88, 94], "decay_factor": 0.25, "augment_shift": 2, "augment_flip": True,
                      "input_mean": 0.286, "input_std": 0.353},
    "shift2_flip": {"augment_shift": 2, "augment_flip": True},
    "shift1_flip_smoothing": dict(FRONTIER_SHIFT1_FLIP, label_smoothing=0.1),
    "shift1_flip_average": dict(FRONTIER_SHIFT1_FLIP, weight_average=0.9995),
    "4x1024_shift1_flip": dict(FRONTIER_SHIFT1_FLIP, layers=[784, 1024, 1024, 1024, 1024, 10]),
}
# The best published test accuracy of a pure MLP on Fashion-MNIST (Nokland and Eidnes, "Training Neural Networks
# with Local Error Signals", ICML 2019: their 3x1024 MLP), and the targets of the issue "How far can an MLP go?".
PUBLISHED_MLP_ACCURACY = 0.9163
FRONTIER_TARGETS = {"single": 0.917, "ensemble": 0.922}
FINAL_STUDENT = "distilled_all"  # section 9's last run: the student distilled from the final members on all 60,000

# The test accuracy that the original study (the seed of this project) reported for its final model:
# section 8 shows where it falls among runs of other seeds.
ORIGINAL_TEST_ACCURACY = 0.8932


def settings(layers, lr, L2_lambda):
    """A run's settings as the searches pass them around: ``dict(layers=tuple, lr=float, L2_lambda=float)``, the
    names of the ``MLP`` constructor's arguments."""
    return {"layers": tuple(int(n) for n in layers), "lr": float(lr), "L2_lambda": float(L2_lambda)}


def settings_from_row(row):
    """The settings dict of a log row: its ``layers`` name (``"784-256-128-10"``) back to a tuple of sizes."""
    return settings(str(row["layers"]).split("-"), row["lr"], row["L2_lambda"])


def make_grid(learning_rates, layer_sizes, l2_lambdas):
    """All combinations as settings dicts (see :func:`settings`).

    Order: layer sizes outermost, then learning rate, then L2 strength.
    """
    return [settings(layers, lr, l2) for layers, lr, l2 in product(layer_sizes, learning_rates, l2_lambdas)]


@dataclass(frozen=True)
class StudyConfig:
    """Everything a run of the notebook depends on besides the data."""

    quick: bool
    output_dir: Path
    learning_rates: tuple[float, ...]
    layer_sizes: tuple[tuple[int, ...], ...]
    l2_lambdas: tuple[float, ...]
    example_runs: tuple[dict, ...]
    max_epoch: int
    print_iter: int
    n_train: int | None = None  # rows kept after the split; None keeps all
    n_val: int | None = None
    n_test: int | None = None
    activation: str = "relu"
    batch_size: int = 100
    decay_factor: float = 0.95
    decay_steps: int = 500
    seed: int = 0
    split_seed: int = 0
    val_fraction: float = 0.1
    halving_factor: int = 3
    halving_min_epochs: int = 2
    baseline_lrs: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5)  # softmax regression's rates, chosen on validation
    # Section 7's rates, searched on validation as the grid searched SGD's four (momentum 0.9 multiplies the step by
    # about 10, so its rates are about a tenth of SGD's).
    momentum_lrs: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05)
    adam_lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3)
    # Section 7's ablation of the wide network: its layers and dropout with the seed's SGD and step decay, and the
    # seed's network with its AdamW and cosine schedule, each at the rate chosen on validation among these.
    ablation_sgd_lrs: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
    ablation_adamw_lrs: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    followup_lrs: tuple[float, ...] = (0.2, 0.3, 0.5)  # beyond the grid's largest rate, on its best architecture
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)  # section 8: the chosen settings again, with other seeds than ``seed``
    shift_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # the splits on which study.shift measures the validation/test gap
    wide_recipe: dict = field(default_factory=lambda: dict(WIDE_RECIPE))
    frontier_recipe: dict = field(default_factory=lambda: dict(FRONTIER_RECIPE))
    frontier_candidates: dict = field(default_factory=lambda: dict(FRONTIER_CANDIDATES))
    frontier_seeds: tuple[int, ...] = FRONTIER_SEEDS
    frontier_round_two: dict = field(default_factory=lambda: dict(FRONTIER_ROUND_TWO))
    final_seeds: tuple[int, ...] = (0, 1, 2)  # section 9's single recipe on all 60,000 images (study.finals)
    ensemble_max_members: int = 4
    distill_temperatures: tuple[float, ...] = (1.0, 2.0, 4.0)
    distill_weight: float = 0.5  # of the teacher's probabilities in a student's targets, the label has the rest
    grid: list = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "grid", make_grid(self.learning_rates, self.layer_sizes, self.l2_lambdas))
        missing = [s for s in self.example_runs if settings(**s) not in self.grid]
        if missing:
            raise ValueError(f"example runs {missing} are not in the grid")

    @property
    def original_test_accuracy(self):
        """:data:`ORIGINAL_TEST_ACCURACY`, to place among the other seeds' test accuracies; None in quick mode, whose
        tiny networks it does not describe."""
        return None if self.quick else ORIGINAL_TEST_ACCURACY

    @property
    def log_dir(self):
        return self.output_dir / "log"

    @property
    def weights_dir(self):
        return self.output_dir / "weights"

    @property
    def fig_dir(self):
        return self.output_dir / "figures"

    @property
    def grid_log_path(self):
        return self.log_dir / "grid_search.csv"

    @property
    def history_dir(self):
        return self.log_dir / "histories"

    @property
    def followup_log_path(self):
        return self.log_dir / "lr_followup.csv"

    @property
    def followup_history_dir(self):
        return self.log_dir / "lr_followup_histories"

    @property
    def seeds_log_path(self):
        return self.log_dir / "seeds.csv"

    @property
    def shift_log_path(self):
        """The log of ``study.shift.shift_table``: the 1-nearest-neighbour accuracies of each split."""
        return self.log_dir / "shift.csv"

    @property
    def model_kwargs(self):
        """The training recipe shared by every run, as keyword arguments of ``MLP`` (all but layers, lr, L2)."""
        return {"activation": self.activation, "max_epoch": self.max_epoch, "batch_size": self.batch_size,
                "decay_factor": self.decay_factor, "decay_steps": self.decay_steps, "print_iter": self.print_iter,
                "seed": self.seed}

    @property
    def halving_kwargs(self):
        """Keyword arguments of ``halving.halving_search``: the grid's recipe, from ``halving_min_epochs`` to its
        ``max_epoch`` epochs."""
        recipe = {key: value for key, value in self.model_kwargs.items() if key != "max_epoch"}
        return dict(recipe, factor=self.halving_factor, min_epochs=self.halving_min_epochs, max_epochs=self.max_epoch)

    @property
    def model_records(self):
        """Where the study's single models are recorded (``study.records``): the baseline's candidates, the final model
        of section 4 and the candidates and wide network of section 7, each with its history and log row, and with
        its weights unless it is a candidate that validation did not choose among its rates."""
        from study.records import Records  # records imports the model; config stays at the bottom of the package

        groups = [lr_names(prefix, lrs) for prefix, lrs in (
            ("baseline", self.baseline_lrs), ("momentum", self.momentum_lrs), ("adam", self.adam_lrs),
            ("wide_sgd", self.ablation_sgd_lrs), ("seed_adamw", self.ablation_adamw_lrs))]
        return Records(self.log_dir / "models.csv", self.log_dir / "model_histories", self.weights_dir,
                       groups=tuple(groups))

    def baseline_candidates(self):
        """Section 2's baseline, softmax regression (``MLP([784, 10])``: no hidden layer) with the grid's recipe and
        each of ``baseline_lrs``: ``{name: MLP keyword arguments}`` (``"baseline_lr0.1"``)."""
        return {name: dict(self.model_kwargs, layers=[784, 10], lr=lr, L2_lambda=0.0)
                for name, lr in zip(lr_names("baseline", self.baseline_lrs), self.baseline_lrs, strict=True)}

    def beyond_candidates(self, best):
        """Section 7's candidates on the grid's best settings ``best``: the same recipe with momentum, with Adam; two
        dicts of ``{name: MLP keyword arguments}``, the name saying the rule and the rate (``"momentum_lr0.01"``)."""
        same = dict(self.model_kwargs, layers=list(best["layers"]), L2_lambda=best["L2_lambda"])
        return ({name: dict(same, optimizer="momentum", lr=lr)
                 for name, lr in zip(lr_names("momentum", self.momentum_lrs), self.momentum_lrs, strict=True)},
                {name: dict(same, optimizer="adam", lr=lr)
                 for name, lr in zip(lr_names("adam", self.adam_lrs), self.adam_lrs, strict=True)})

    def ablation_candidates(self, best):
        """Section 7's ablation of the wide network (``wide_recipe``) on the grid's best settings ``best``: two dicts
        of ``{name: MLP keyword arguments}``, one candidate per rate.

        - ``wide_sgd_lr<rate>`` (c1): the wide network's layers and dropout trained by the grid's recipe
          (``model_kwargs``: plain SGD, the step decay, its batch and epochs) with the grid's best L2, at each rate of
          ``ablation_sgd_lrs``;
        - ``seed_adamw_lr<rate>`` (c2): the grid's best layers without dropout, trained as the wide network is
          (``wide_settings``: AdamW, its weight decay, the cosine schedule, its batch and epochs), at each rate of
          ``ablation_adamw_lrs``.
        """
        wide = self.wide_settings
        sgd = dict(self.model_kwargs, layers=list(wide["layers"]), dropout=wide["dropout"],
                   L2_lambda=best["L2_lambda"])
        adamw = dict(wide, layers=list(best["layers"]), dropout=0.0)
        return ({name: dict(sgd, lr=lr)
                 for name, lr in zip(lr_names("wide_sgd", self.ablation_sgd_lrs), self.ablation_sgd_lrs, strict=True)},
                {name: dict(adamw, lr=lr) for name, lr in
                 zip(lr_names("seed_adamw", self.ablation_adamw_lrs), self.ablation_adamw_lrs, strict=True)})

    def followup_grid(self, best):
        """The learning-rate follow-up: the grid's best architecture and L2 strength ``best`` with the rates of
        ``followup_lrs``, as a grid for ``grid.grid_search`` (the grid's recipe)."""
        return make_grid(self.followup_lrs, [best["layers"]], [best["L2_lambda"]])

    def seed_settings(self, best):
        """Section 8's runs: the grid's best settings ``best`` and recipe, once with each of ``seeds`` (the seed
        sets the initialisation and the order of the batches; the split stays the study's)."""
        same = dict(self.model_kwargs, layers=list(best["layers"]), lr=best["lr"], L2_lambda=best["L2_lambda"])
        return [dict(same, seed=seed) for seed in self.seeds]

    @property
    def seed_records(self):
        """Where section 8's settings and seeds are recorded with their histories (``study.records``): the runs of
        the log of ``seeds_log_path``, which keeps only their outcome, trained again so that their validation curves
        can be read (``study.shift.decompose_drop``). They repeat those runs bit for bit only on the BLAS kernels
        that trained them: the committed records were trained on other kernels (SkylakeX, where the log's came from
        Haswell), and their best validation accuracies differ from the log's by up to 0.2 points."""
        from study.records import Records  # records imports the model; config stays at the bottom of the package

        return Records(self.log_dir / "seed_records.csv", self.log_dir / "seed_histories", self.weights_dir / "seeds")

    def seed_named_settings(self, best):
        """:meth:`seed_settings` by name (``"seed1"``, ...), as ``records.fit_or_read`` takes them."""
        return {f"seed{settings['seed']}": settings for settings in self.seed_settings(best)}

    @property
    def frontier_records(self):
        """Where section 9's runs are recorded (``study.records``): each with its weights (``weights/frontier/``),
        history and log row (``log/frontier.csv``); distillation's students on the 54,000 images, compared on
        validation alone (the final student trains with the temperature they choose), without their weights; the
        candidates compared on validation alone, with their validation probabilities instead of their weights once
        the final student is recorded (``study.finals``: until then they may have to teach a student)."""
        from study.records import Records  # records imports the model; config stays at the bottom of the package

        return Records(self.log_dir / "frontier.csv", self.log_dir / "frontier_histories",
                       self.weights_dir / "frontier",
                       weightless=frozenset(map(student_name, self.distill_temperatures)), finished=FINAL_STUDENT)

    def frontier_candidate_settings(self, candidates=None):
        """Section 9's candidates (``candidates``, the first round's by default), ``{name: MLP keyword arguments}``:
        the recipe with each candidate's changes."""
        return {name: {**self.frontier_recipe, "seed": self.seed, **changes}
                for name, changes in (candidates or self.frontier_candidates).items()}

    def frontier_member_settings(self, chosen, settings):
        """The members besides the chosen candidate ``chosen`` (its ``settings``): the same recipe, other seeds."""
        return {f"{chosen}_seed{seed}": dict(settings, seed=seed) for seed in self.frontier_seeds}

    @property
    def wide_settings(self):
        """Section 7's wider network with dropout and Adam, as ``MLP`` keyword arguments."""
        return dict(self.wide_recipe, seed=self.seed, print_iter=self.print_iter)


def lr_names(prefix, lrs):
    """The names of candidates that differ by their learning rate, one per rate of ``lrs``, in order:
    ``"momentum_lr0.01"``."""
    return tuple(f"{prefix}_lr{lr:g}" for lr in lrs)


def student_name(temperature):
    """The name of distillation's student at ``temperature`` on the 54,000 training images: ``"distilled_T2"``."""
    return f"distilled_T{temperature:g}"


def study_config(quick: bool, output_dir=None) -> StudyConfig:
    """The settings of a full run, or of a quick one.

    Outputs go to ``output_dir`` if given; otherwise a full run writes into the repository and a quick run into a
    new temporary folder. The quick grid (2 learning rates x 2 tiny architectures x 2 L2 strengths) keeps the
    shape of the full one, and its two example runs are the counterparts of the full ones: the smallest
    architecture with lr 0.01 and L2 0.01, and with lr 0.1 and no L2.
    """
    if output_dir is None:
        output_dir = tempfile.mkdtemp(prefix="fmnist_quick_") if quick else REPO_DIR
    output_dir = Path(output_dir)
    if quick:
        archs = ((784, 32, 16, 10), (784, 16, 8, 10))
        return StudyConfig(
            quick=True, output_dir=output_dir, learning_rates=(0.01, 0.1), layer_sizes=archs, l2_lambdas=(0.0, 0.01),
            example_runs=(settings(archs[-1], 0.01, 0.01), settings(archs[-1], 0.1, 0.0)),
            max_epoch=2, print_iter=10, n_train=3000, n_val=1000, n_test=1000, halving_min_epochs=1,
            baseline_lrs=(0.1,), momentum_lrs=(0.05,), adam_lrs=(1e-3,), ablation_sgd_lrs=(0.1,),
            ablation_adamw_lrs=(1e-3,), seeds=(1, 2, 3), shift_seeds=(0, 1),
            wide_recipe=dict(WIDE_RECIPE, layers=[784, 64, 64, 10], max_epoch=2),
            frontier_recipe=dict(FRONTIER_RECIPE, layers=[784, 32, 32, 32, 10], max_epoch=2, print_iter=10),
            frontier_seeds=(1, 2), final_seeds=(0, 1), distill_temperatures=(1.0, 2.0),
            frontier_round_two={name: dict(changes, layers=[784, 32, 32, 32, 32, 10]) if "layers" in changes
                                else changes for name, changes in FRONTIER_ROUND_TWO.items()},
        )
    archs = ((784, 256, 128, 10), (784, 128, 64, 10), (784, 64, 32, 10))
    return StudyConfig(
        quick=False, output_dir=output_dir, learning_rates=(0.005, 0.01, 0.05, 0.1), layer_sizes=archs,
        l2_lambdas=(0.0, 0.001, 0.01, 0.05),
        example_runs=(settings(archs[-1], 0.01, 0.01), settings(archs[-1], 0.1, 0.0)),
        max_epoch=40, print_iter=100,
    )


def describe_place(path, repo=REPO_DIR):
    """Where ``path`` is, without the machine's absolute paths: ``"the repository"``, a path relative to it
    (``"data/fashion"``), or ``"a folder outside the repository"``."""
    path, repo = Path(path).resolve(), Path(repo).resolve()
    if path == repo:
        return "the repository"
    if repo in path.parents:
        return path.relative_to(repo).as_posix()
    return "a folder outside the repository"


def subsample(data, config):
    """Keep the first ``n_train``, ``n_val`` and ``n_test`` rows of the split (all of them where ``None``).

    The training and validation rows are already in the seeded random order of the split; the test rows keep the
    file order, which mixes the classes.
    """
    X_train, y_train, X_val, y_val, X_test, y_test = data
    keep = (slice(config.n_train), slice(config.n_val), slice(config.n_test))
    return (X_train[keep[0]], y_train[keep[0]], X_val[keep[1]], y_val[keep[1]], X_test[keep[2]], y_test[keep[2]])

