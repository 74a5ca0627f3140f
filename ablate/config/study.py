"""The study-file schema: every section of a study YAML as a pydantic model.

Each field documents itself (`description`): the same text serves `--help`, the docs and
the error messages. Models forbid unknown keys and are frozen after loading.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from .checks import optimizer_problem, randaugment_problem
from .launcher import Launcher
from .recipes import PRECISION_HELP, RECIPES, scaled_preset
from .steps import Match, Step, VariantSpec
from .strict import Strict

DATASETS: dict[str, dict[str, int]] = {  # native image size, channels, classes
    "fashion-mnist": {"image_size": 28, "in_chans": 1, "num_classes": 10},
    "cifar10": {"image_size": 32, "in_chans": 3, "num_classes": 10},
    "cifar100": {"image_size": 32, "in_chans": 3, "num_classes": 100},
    "imagefolder": {"image_size": 224, "in_chans": 3, "num_classes": 1000},
    "synthetic": {"image_size": 32, "in_chans": 3, "num_classes": 10},
}


class DataSpec(Strict):
    """Where the images come from and at what size they are trained."""

    dataset: Literal["fashion-mnist", "cifar10", "cifar100", "imagefolder", "synthetic"] = Field(
        "fashion-mnist", description="Data source.")
    root: str | None = Field(None, min_length=1, description="Folder holding the data (used, or an error: never "
                             "another copy); null = the usual places (see README).")
    image_size: int | None = Field(None, gt=0, description="Training/eval resolution; null = the dataset's own.")
    in_chans: int | None = Field(None, gt=0, description="Input channels; null = the dataset's.")
    num_classes: int | None = Field(None, gt=0, description="Classes; null = the dataset's (imagefolder: its folders).")
    train_subset: int | None = Field(None, gt=0, description="Train on a stratified, seeded subset of this many images "
                                     "(synthetic: the number of images made).")
    val_subset: int | None = Field(None, gt=0, description="Evaluate on this many validation images.")

    @field_validator("root")
    @classmethod
    def _home(cls, v: str | None) -> str | None:
        """`~/data` as the shell means it, once, for every reader of the path (it is not part of a variant id)."""
        import os

        return os.path.expanduser(v) if v else v

    def resolved(self, key: str) -> int:
        value = getattr(self, key)
        return value if value is not None else DATASETS[self.dataset][key]


MODERN = RECIPES["modern"]  # `Recipe`'s field defaults are the modern preset's (config/recipes.py): one home for each
# value. A variant id hashes the recipe fields that differ from these defaults: the values there are part of every id.


class Recipe(Strict):
    """How each variant is trained. `preset` fills every field the study leaves out."""

    preset: Literal["modern", "classic"] = Field("modern", description="`modern`: the ConvNeXt paper's recipe; "
                                                 "`classic`: the ResNet recipe.")
    epochs: int = Field(MODERN["epochs"], gt=0, description="Training epochs.")
    batch_size: int = Field(128, gt=0, description="Global batch: images per optimizer update, over all "
                            "data-parallel processes and accumulated micro-batches (the paper's 4096).")
    micro_batch: int | None = Field(
        None, gt=0, description="Images per forward/backward pass of one process; the gradients of the passes "
        "that make up `batch_size` are accumulated into one update (at or above a process's share: one pass). null = "
        "the process's whole share in one pass "
        "(halved on a CUDA out-of-memory error until it fits, one process only). An execution detail like the "
        "number of processes: not part of a variant's id (BatchNorm normalizes over each pass's images).")
    opt: str = Field(MODERN["opt"], description="Optimizer name understood by timm.optim.create_optimizer_v2.")
    lr: float | None = Field(None, gt=0, description="Learning rate; null = base_lr x batch_size / base_batch "
                             "(the linear scaling rule on the global batch).")
    base_lr: float = Field(MODERN["base_lr"], gt=0, description="Learning rate at base_batch images per step.")
    base_batch: int = Field(MODERN["base_batch"], gt=0, description="Batch size base_lr is quoted for.")
    weight_decay: float = Field(MODERN["weight_decay"], ge=0, description="Weight decay.")
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum (SGD).")
    sched: Literal["cosine", "step"] = Field(MODERN["sched"], description="Learning-rate schedule after warmup.")
    warmup_epochs: float = Field(MODERN["warmup_epochs"], ge=0, description="Linear warmup epochs. Left out of a "
                                 "study, the preset's value scaled to `epochs` (modern: 20 of 300 epochs; 4 epochs "
                                 "-> 0.27).")
    min_lr: float = Field(1e-6, ge=0, description="Floor of the cosine schedule.")
    decay_milestones: tuple[float, ...] = Field(
        (30, 60, 80), description="Epochs where `step` multiplies lr by 0.1. Left out of a study, the preset's "
        "milestones scaled to `epochs` (classic: 30/60/80 of 90 epochs; 4 epochs -> 1.33/2.67/3.56).")
    randaugment: str | None = Field(MODERN["randaugment"], description="timm RandAugment spec; null = off.")
    mixup: float = Field(MODERN["mixup"], ge=0, description="Mixup alpha; 0 = off.")
    cutmix: float = Field(MODERN["cutmix"], ge=0, description="CutMix alpha; 0 = off.")
    random_erasing: float = Field(MODERN["random_erasing"], ge=0, le=1, description="Random-erasing probability.")
    label_smoothing: float = Field(MODERN["label_smoothing"], ge=0, lt=1, description="Label smoothing.")
    hflip: float = Field(0.5, ge=0, le=1, description="Horizontal-flip probability.")
    crop_scale: tuple[float, float] | None = Field(
        (0.08, 1.0), description="Random-resized-crop area range; null = no crop.")
    drop_path: float | None = Field(MODERN["drop_path"], ge=0, lt=1, description="Stochastic depth rate given to "
                                    "networks whose own `drop_path` is 0; null = leave the network's own.")
    layer_scale: float | None = Field(MODERN["layer_scale"], gt=0, description="Layer-scale init given to the "
                                      "network; null = the network's own `layer_scale`.")
    ema: float | None = Field(MODERN["ema"], gt=0, lt=1, description="EMA decay of the weights; null = off.")
    clip_grad: float | None = Field(None, gt=0, description="Gradient-norm clip; null = off.")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description=PRECISION_HELP)

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            preset = data.get("preset", "modern")
            if preset in RECIPES:
                return {**scaled_preset(preset, data.get("epochs"), data.get("batch_size")), **data}
        return data

    @field_validator("opt")
    @classmethod
    def _known_optimizer(cls, v: str) -> str:
        problem = optimizer_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("randaugment")
    @classmethod
    def _valid_randaugment(cls, v: str | None) -> str | None:
        problem = randaugment_problem(v) if v is not None else None
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("crop_scale")
    @classmethod
    def _crop_range(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0 < v[0] <= v[1] <= 1:
            raise ValueError(f"[low, high] with 0 < low <= high <= 1 (a fraction of the image area); got {list(v)}")
        return v

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else self.base_lr * self.batch_size / self.base_batch


class Scale(Strict):
    """Proxy scaling applied to every variant before training (FLOPs are also given unscaled)."""

    width: float = Field(1.0, gt=0, le=8, description="Multiplier on dims and stem_width.")
    depth: float = Field(1.0, gt=0, le=8, description="Multiplier on the blocks of every stage (at least 1).")
    depth_rule: Literal["round", "keep_steps"] = Field(
        "round", description="`round`: each stage's blocks x depth, rounded (at least 1); `keep_steps`: also keeps "
        "every change of depth between the study's variants at every stage (config/depth.py), e.g. the stage "
        "ratio step's block out of stage 2 at depth 0.34; not for a search.")
    divisor: int = Field(8, gt=0, description="Scaled widths are rounded to a multiple of this.")


class Measure(Strict):
    """What is measured besides accuracy."""

    flops_image_size: int = Field(224, gt=0, description="Image size of the paper-scale count (3 channels, "
                                  "1000 classes, unscaled network).")


class Range(Strict):
    """A numeric search dimension: `{low: 1e-4, high: 1e-2, log: true}`; ints when low/high/step are ints."""

    low: float
    high: float
    step: float | None = Field(None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.high <= self.low:
            raise ValueError(f"high ({self.high}) must be above low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self

    @property
    def is_int(self) -> bool:
        return all(float(v).is_integer() for v in (self.low, self.high, self.step or 1)) and not self.log


class Search(Strict):
    """An optuna search over network/recipe fields (sampler grid = every combination, like `grid:`)."""

    sampler: Literal["tpe", "random", "grid"] = Field("tpe", description="optuna sampler.")
    trials: int = Field(20, gt=0, description="How many configurations to train (tpe/random).")
    objective: Literal["top1", "top5", "ema_top1"] = Field("top1", description="Validation metric maximised.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Sampler seed (numpy's range: 0 to 2^32-1).")
    pruner: Literal["none", "median", "successive_halving", "hyperband"] = Field(
        "none", description="optuna pruner (tpe/random): stops a trial whose learning curve falls behind the others "
        "(recorded as pruned). Off by default; ablations and grid searches never prune.")
    space: dict[str, list[Any] | Range] = Field(
        min_length=1, description="Field (or dotted recipe./data. path) -> list of choices or {low, high, step, log}.")
    flops: tuple[float | None, float | None] | None = Field(
        None, description="[low, high] GFLOPs at the paper's scale (null = open end): a sampled configuration "
        "outside is rejected by counting it, before anything is trained, and the sampler asks again.")
    params: tuple[float | None, float | None] | None = Field(
        None, description="[low, high] parameters at the paper's scale (e.g. [20e6, 30e6]); as `flops`.")
    seeds: int = Field(1, ge=1, le=20, description="Seeds each sampled configuration is trained on (the study's "
                       "`seeds`, then the next integers): the objective optuna sees is their mean.")
    confirm: int = Field(0, ge=0, le=20, description="Once the budget is spent, retrain the best k configurations "
                         "on `confirm_seeds` seeds before the report names a winner; 0 = no confirmation.")
    confirm_seeds: int = Field(5, ge=2, le=50, description="Seeds of a confirmed configuration, in all.")

    @field_validator("space", mode="before")
    @classmethod
    def _dimensions(cls, v: Any) -> Any:
        """A `{low, high}` dimension's own problem (not pydantic's 'should be a valid list' of the union)."""
        from pydantic import ValidationError

        from .net import FieldError

        if isinstance(v, dict):
            for key, dim in v.items():
                if isinstance(dim, dict):
                    try:
                        Range.model_validate(dim)
                    except ValidationError as e:
                        err = e.errors()[0]
                        where = ".".join(str(p) for p in err["loc"])
                        msg = err["msg"].removeprefix("Value error, ")
                        raise FieldError(str(key), f"{where}: {msg}" if where else msg) from None
                elif not isinstance(dim, list):
                    raise FieldError(str(key), "a list of choices or {low, high, step, log}, not "
                                     f"{type(dim).__name__}")
        return v

    @field_validator("flops", "params")
    @classmethod
    def _ordered_bounds(cls, v: tuple[float | None, float | None] | None) -> tuple[float | None, float | None] | None:
        if v is not None:
            low, high = v
            if low is None and high is None:
                raise ValueError("give at least one bound")
            if low is not None and high is not None and high < low:
                raise ValueError(f"high ({high}) is below low ({low})")
        return v

    @property
    def bounded(self) -> bool:
        return self.flops is not None or self.params is not None


class Evidence(Strict):
    """How the study's changes are judged (correction, margin, extra seeds, readout): docs/evidence.md."""

    correction: Literal["holm", "bh", "none"] = Field(
        "holm", description="Multiplicity correction over the study's judged changes (one family): `holm` "
        "(family-wise error, Holm's step-down), `bh` (false discovery rate, Benjamini-Hochberg) or `none`.")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="Error rate of the whole family (after correction).")
    margin: float | None = Field(
        None, gt=0, description="Equivalence margin in points of top-1: a change whose corrected interval lies "
        "inside +-margin is `equivalent` (two one-sided tests); null = no change is called equivalent.")
    max_seeds: int | None = Field(
        None, gt=1, le=100, description="Add seeds to the variants of undetermined changes, round by round, "
        "until every change is settled or has this many seeds; null = train `seeds` only.")
    round_seeds: int = Field(2, gt=0, le=50, description="Seeds added to each open variant per round.")
    readout: Literal["top1", "top1_best", "ema_top1", "loss", "train_loss_sum"] = Field(
        "top1", description="What a trial's score is, for the verdicts and the headline agreement with the paper: "
        "final top-1, best top-1 over epochs, EMA top-1, final validation loss or the sum of the training losses "
        "over epochs (the losses: lower is better). The report shows agreement for every readout the trials have.")


class Study(Strict):
    """A study file: the base network, data, recipe, and the variants to compare."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100,
                      description="Folder name under results/ and reports/.")
    description: str = ""
    model: dict[str, Any] = Field(default_factory=lambda: {"preset": "resnet50"},
                                  description="The base network: `preset:` and/or NetConfig fields, or `timm:`.")
    data: DataSpec = DataSpec()
    recipe: Recipe = Recipe()
    scale: Scale = Scale()
    measure: Measure = Measure()
    seeds: list[Annotated[int, Field(ge=-2**63, le=2**63 - 1)]] = Field(
        [0], min_length=1, description="Each variant is trained once per seed (64-bit integers, as torch takes).")
    evidence: Evidence = Field(Evidence(), description="How changes are judged (correction, margin, extra seeds).")
    steps: list[Step] = Field(default_factory=list, description="Cumulative roadmap steps.")
    variants: list[VariantSpec] = Field(default_factory=list, description="Independent variants on the base model.")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="Cartesian product of field values.")
    search: Search | None = Field(None, description="An optuna search instead of a fixed list of variants.")
    launcher: Launcher | None = Field(None, description="Cluster workers for `ablate run --launcher slurm`.")
    match: Match | None = Field(None, description="Iso-cost: every variant's widths scaled to land on one cost "
                                "(e.g. {gflops: 4.47}); a step or variant may give its own.")
    plugins: list[str] = Field(
        default_factory=list, description="Python modules imported before the study is checked, each a module name "
        "(`mypkg.blocks`, found beside the study file or installed) or a .py file relative to the study file: they "
        "register norms, activations, stems, blocks or whole timm models by name (docs/plugins.md). Installed "
        "packages can also register through the `ablate.plugins` entry-point group. A variant that uses a name a "
        "plug-in registered has that plug-in's source in its id: edit the plug-in, and its trials run again.")
    exclude: list[str] = Field(default_factory=list, description="Names of variants to leave out (e.g. in a "
                               "proxy study that extends a full one: a reference model that cannot run at its size).")

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds repeat: {v}")
        return v

    @model_validator(mode="after")
    def _enough_max_seeds(self) -> Study:
        from .net import FieldError

        if (top := self.evidence.max_seeds) is not None and top < len(self.seeds):
            raise FieldError("evidence.max_seeds", f"{top} is below the study's {len(self.seeds)} seeds")
        return self

    def first_seeds(self, n: int) -> list[int]:
        """The first n seeds of the study: its `seeds`, then the next integers after the largest."""
        return list(self.seeds[:n]) + [max(self.seeds) + 1 + i for i in range(max(n - len(self.seeds), 0))]

    def added_seeds(self, rounds: int) -> list[int]:
        """The seeds rounds 1..`rounds` of `evidence.max_seeds` add: the next integers after the largest given,
        `evidence.round_seeds` a round, never beyond `max_seeds` seeds in all."""
        top = self.evidence.max_seeds or len(self.seeds)
        n = min(rounds * self.evidence.round_seeds, top - len(self.seeds))
        return [max(self.seeds) + 1 + i for i in range(max(n, 0))]
