"""Every params.yaml section as a typed, validated dataclass: the one module that defines them.

params.yaml is where the recipe lives. The defaults below only let a stage (or a test) leave a
key out; tests/test_params.py proves that every section parsed from {} equals the same section of
params.yaml (or fails naming the key it needs), so a key deleted from params.yaml changes nothing.

The stages import their section's class from here, and localize.preflight checks every section
through this module alone: no library module imports a stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from localize.config import MAX_BATCH, MAX_BOOTSTRAP, check_range, choice, short
from localize.imageio import MAX_FILE_BYTES_PER_PIXEL, MAX_PIXELS, check_max_file_bytes_per_pixel, check_max_pixels
from localize.index_csv import unstorable
from localize.layout import SPLITS
from localize.metrics import check_threshold
from localize.prepared import MAX_SIZE

# The choices of some keys, named here so that checking params imports no model, loss or
# image code (tests/test_params.py checks them against the code that implements them).
LOSSES = ("dice", "dice-bce", "dice-bce-max")  # localize.losses.LOSSES
DEMO_GENERATORS = ("telea", "navier-stokes", "biharmonic", "poisson", "patchmatch",  # localize.demo.DEMO_GENERATORS
                   "telea-jpeg", "navier-stokes-jpeg", "biharmonic-jpeg", "poisson-jpeg", "patchmatch-jpeg")
# model.arch choices.
ARCHS = ("unet-seed", "unet-hp", "unet-tex", "unet-tex-inputs", "unet-res-srm", "unet-res", "patches")
SUPERVISIONS = ("full", "weak")
# Kinds of self-blended fake (localize/synthetic.py, which reads them from here).
BLENDS = ("blur", "splice", "shift", "resample", "noise")
CLASSIC_BLENDS = BLENDS[:3]


def check_blends(blends: list[str]) -> None:
    if not blends or len(set(blends)) != len(blends) or not set(blends) <= set(BLENDS):
        raise ValueError(f"blends = {short(blends)}: give distinct kinds from: {', '.join(BLENDS)}")

# Five generators by default: each one adds two models (alone, and held out) to the training
# table, which is the CPU-expensive part. They cover the two diffusion fills OpenCV ships,
# real texture spliced from another photo (poisson) and from the same photo (patchmatch),
# and a smooth fill followed by a whole-image re-encoding. Plain `biharmonic` (and
# `<name>-jpeg` for any fill) can be added through params.
DEFAULT_GENERATORS = ("telea", "navier-stokes", "poisson", "biharmonic-jpeg", "patchmatch")
# Test photos get three fakes each, so every generator has ~228 test fakes (a cell's 95%
# interval ~±0.035, not ±0.05); valid two, for a steadier best-epoch choice; train one, which
# keeps preprocessing and training as cheap as before.
DEFAULT_FAKES_PER_FACE = {"train": 1, "valid": 2, "test": 3}
MAX_FAKES_PER_FACE = 20

CLEAN = "clean"  # robustness: the unperturbed copy
MODEL_SETS = ("single", "all")  # the named choices of robustness.models; a list of split names also works

# kind -> (what its strength means, the check on it)
KINDS = {
    "jpeg": "quality, a whole number in 1..100",
    "downscale": "scale factor in (0, 1]: shrink by it, then back to the original size",
    "blur": "Gaussian sigma in pixels, in [0, 64] (its kernel, and so its time, grows with it)",
    "noise": "Gaussian sigma on 0-255, in [0, 255]",
}
MAX_BLUR, MAX_NOISE = 64, 255
MAX_STRENGTHS = 20  # per kind: each is a copy of every test set, scored by every model
MAX_IMAGES = 1_000_000  # robustness.max_images, per test set
MAX_OVERLAYS = 1000


def check(kind: str, strength: float) -> None:
    """ValueError naming the allowed kinds or the allowed range of the strength."""
    if kind not in KINDS:
        raise ValueError(f"unknown perturbation {short(kind)}; choose one of: {', '.join(KINDS)}")
    ok = math.isfinite(strength) and {
        "jpeg": float(strength).is_integer() and 1 <= strength <= 100,
        "downscale": 0 < strength <= 1,
        "blur": 0 <= strength <= MAX_BLUR,
        "noise": 0 <= strength <= MAX_NOISE,
    }[kind]
    if not ok:
        raise ValueError(f"{kind} {short(strength)}: must be the {KINDS[kind]}")


def label(kind: str, strength: float) -> str:
    """A perturbation's name in the robustness outputs: `clean`, or `<kind>-<strength>`."""
    return CLEAN if kind == CLEAN else f"{kind}-{strength:g}"


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


@dataclass(frozen=True)
class DemoParams:
    seed: int = 0
    size: int = 128  # crop side in pixels; preprocess resizes to its own size
    max_faces: int | None = None  # None = every distinct real photo (~380)
    valid_fraction: float = 0.1
    test_fraction: float = 0.2  # train gets the rest
    min_fake: float = 0.03  # bounds on the fake fraction of every mask
    max_fake: float = 0.40
    jpeg_quality: int = 75  # of the `-jpeg` generators' whole-image round trip
    inpaint_radius: int = 3  # neighbourhood of the OpenCV Telea / Navier-Stokes fills
    min_change: float = 3.0  # grey levels: a fill must change the pixels under its mask this much on average
    fakes_per_face: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_FAKES_PER_FACE))
    generators: list[str] = field(default_factory=lambda: list(DEFAULT_GENERATORS))

    def validate(self) -> None:
        if self.size < 32:
            raise ValueError(f"size = {self.size}: use at least 32 pixels, or the face parts blur into one")
        if self.max_faces is not None and self.max_faces < len(SPLITS):
            raise ValueError(f"max_faces = {self.max_faces}: need at least {len(SPLITS)}, one per split")
        for name in ("valid_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} = {getattr(self, name)}: must lie strictly between 0 and 1")
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ValueError("valid_fraction + test_fraction must leave some photos for train")
        if not 0.0 < self.min_fake < self.max_fake < 1.0:
            raise ValueError(f"need 0 < min_fake < max_fake < 1, got {self.min_fake} and {self.max_fake}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality = {self.jpeg_quality}: must be in 1..95")
        if self.inpaint_radius < 1:
            raise ValueError(f"inpaint_radius = {self.inpaint_radius}: must be at least 1")
        if not 0.0 <= self.min_change < 255.0:
            raise ValueError(f"min_change = {self.min_change}: must be in [0, 255) grey levels")
        counts = self.fakes_per_face
        if sorted(counts) != sorted(SPLITS) or not all(1 <= n <= MAX_FAKES_PER_FACE for n in counts.values()):
            raise ValueError(
                f"fakes_per_face = {counts}: give each of {', '.join(SPLITS)} a count in 1..{MAX_FAKES_PER_FACE}"
            )
        unknown = [g for g in self.generators if g not in DEMO_GENERATORS]
        if unknown or not self.generators or len(set(self.generators)) != len(self.generators):
            raise ValueError(
                f"generators = {self.generators}: give distinct names from: {', '.join(DEMO_GENERATORS)}"
            )


@dataclass(frozen=True)
class DataParams:
    root: str  # the Dolos-layout folder; dvc.yaml passes it (quoted) to this stage

    def validate(self) -> None:
        if not self.root.strip():
            raise ValueError("root is empty: set it to the folder that holds real/ and fake/")
        shell = sorted({c for c in self.root if c in '"$`\\'})
        if shell or unstorable(self.root):
            what = " ".join(shell) if shell else "a control character"
            raise ValueError(f"root = {self.root!r} holds {what}, which dvc.yaml's quoted command line "
                             "cannot pass on as is; rename the folder or link to it under a plain name")


@dataclass(frozen=True)
class IndexParams:
    on_error: str = choice("fail", "skip", default="fail")
    workers: int = 0  # processes for the checks; 0 = every core this process may use
    # Largest width x height read; bigger files are refused before any decode. null: MAX_PIXELS.
    max_pixels: int | None = None
    # Largest file per declared pixel (plus 1 MiB of metadata); more is data after the image, refused unread.
    max_file_bytes_per_pixel: int = MAX_FILE_BYTES_PER_PIXEL

    def validate(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers = {self.workers}: use 0 (all cores) or a positive count")
        if self.max_pixels is not None:
            check_max_pixels(self.max_pixels, "max_pixels")
        check_max_file_bytes_per_pixel(self.max_file_bytes_per_pixel, "max_file_bytes_per_pixel")

    @property
    def pixel_limit(self) -> int:
        return MAX_PIXELS if self.max_pixels is None else self.max_pixels


@dataclass(frozen=True)
class PreprocessParams:
    size: int = 64  # square side in pixels; also the resolution IoU is evaluated at
    workers: int = 0  # decoding processes; 0 = every core this process may use

    def validate(self) -> None:
        if not 1 <= self.size <= MAX_SIZE:
            raise ValueError(f"size = {self.size}: must be between 1 and {MAX_SIZE} pixels")
        if self.workers < 0:
            raise ValueError(f"workers = {self.workers}: use 0 (all cores) or a positive count")


CONTEXTS = (1, 2, 4)  # model.context: the context path's downscale factor
CONTEXT_ARCHS = ("unet-tex", "unet-tex-inputs", "unet-hp")  # the architectures that have one


@dataclass(frozen=True)
class ModelParams:
    arch: str = choice(*ARCHS, default="unet-tex")
    width: int = 24
    dropout: float = 0.2
    # unet-hp / unet-tex: the U-Net's context path runs at 1/context of the input side (the residual
    # statistics and the per-pixel head stay at full resolution); 1 = all of it at full resolution.
    context: int = 1

    def validate(self) -> None:
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.context not in CONTEXTS:
            raise ValueError(f"context = {self.context}: choose one of {', '.join(map(str, CONTEXTS))}")
        if self.context > 1 and self.arch not in CONTEXT_ARCHS:
            raise ValueError(f"context = {self.context} needs arch {' or '.join(CONTEXT_ARCHS)} "
                             f"(a {self.arch} runs at full resolution only: use context 1)")

    def for_arch(self, arch: str) -> ModelParams:
        """These params with another arch (a benchmark's comparison row): context 1 where `arch` has
        no context path, the rest kept."""
        return replace(self, arch=arch, context=self.context if arch in CONTEXT_ARCHS else 1)


@dataclass(frozen=True)
class TrainParams:
    source: str = "table"
    epochs: int = 8
    # Fixed steps per epoch give every split the same compute, whether it pools one
    # generator or several; null means one full pass over the training fakes (localize/budget.py).
    steps_per_epoch: int | None = 20
    batch_size: int = 16
    lr: float = 0.001
    weight_decay: float = 0.0
    loss: str = choice(*LOSSES, default="dice-bce")
    augment: str = choice("flip", "none", default="flip")
    # Share of each batch made of self-blended fakes from real training faces
    # (localize/synthetic.py): a generator-agnostic signal against overfitting to the
    # training generators' fingerprints. 0 trains on the generators' fakes alone.
    synthetic: float = 0.0
    blends: list[str] = field(default_factory=lambda: list(CLASSIC_BLENDS))  # their kinds
    # Share of each batch made of plain real training faces with empty masks: without them
    # nothing in training says that an untouched face has no fake pixel.
    real: float = 0.25
    # Learning rate over the run: constant, or a cosine decay from train.lr to 0 after a
    # short linear warm-up (a function of the step alone, so resume needs no extra state).
    schedule: str = choice("constant", "cosine", default="cosine")
    # full: the masks; weak: image labels only (real 0, fake 1), masks never read (localize/supervision.py).
    supervision: str = choice(*SUPERVISIONS, default="full")
    # Probability per training image (fakes and real faces) of a resize round trip and a JPEG
    # re-save (localize/degrade.py): robustness to post-processing. 0 leaves batches as they were.
    degrade: float = 0.0
    seed: int = 0
    device: str = choice("auto", "cpu", "cuda", "mps", default="auto")
    # fp32 by default: the committed table on every CPU; auto (bf16 on CPUs with native bf16) is faster
    # there and gives other numbers (docs/reliability.md).
    precision: str = choice("auto", "fp32", "bf16", "fp16", default="fp32")
    threads: int | None = None  # null: every core this process may use, shared among local processes
    # Training processes on this machine, started with torchrun when > 1 (gloo on CPU, nccl on CUDA).
    procs: int = 1
    # How processes share the work: `data` = DDP, every process takes a slice of every batch
    # (the global batch stays train.batch_size); `splits` = whole splits, one process each.
    distribute: str = choice("data", "splits", default="data")
    # Stop a split after this many epochs without a better valid score (null: never; localize/budget.py).
    patience: int | None = None
    # At most this many optimizer steps per split, the last epoch shortened to fit (null: no cap).
    max_steps: int | None = None
    # Where each split starts: `pretrained`, the pretrain stage's generator-agnostic weights
    # (stages/pretrain.py: self-blends of real training faces only), or `scratch`.
    init: str = choice("scratch", "pretrained", default="pretrained")
    # Train on random square crops of this side (px) of every batch image, at the same offset in its
    # mask; valid and test images stay whole. A step then costs about (crop / size)^2 of a full one.
    crop: int | None = None
    # Decay of an exponential moving average of the weights (and BatchNorm statistics), updated
    # after every step; the average is validated, selected and saved in their place (null: off).
    ema: float | None = None
    # unet-tex: optimizer steps that fit its per-pixel head alone, on sampled training pixels, before
    # fine-tuning (localize/head_fit.py); 0 = off.
    head_steps: int = 0

    def validate(self) -> None:
        check_blends(self.blends)
        if self.crop is not None and not 8 <= self.crop <= MAX_SIZE:
            raise ValueError(f"crop must be null (whole images) or in [8, {MAX_SIZE}], got {self.crop}")
        if self.head_steps < 0:
            raise ValueError(f"head_steps must be >= 0 (0 = off), got {self.head_steps}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ValueError(f"ema must be null (off) or in (0, 1), e.g. 0.95, got {self.ema}")
        for name in ("epochs", "batch_size", "procs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("steps_per_epoch", "patience", "max_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1 or null (off), got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for name in ("synthetic", "real"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.synthetic + self.real >= 1:
            raise ValueError(f"synthetic + real must be < 1 (some of each batch must be the generators' fakes), "
                             f"got {self.synthetic} + {self.real}")
        # (train.real does not apply to weak supervision: its batches are half real faces by construction.)
        if self.supervision == "weak" and self.synthetic:
            raise ValueError(f"synthetic = {self.synthetic} needs supervision full (self-blended fakes are "
                             "mask-supervised); with supervision weak use synthetic 0")
        if not 0 <= self.degrade <= 1:
            raise ValueError(f"degrade must be in [0, 1], got {self.degrade}")
        _check_seed(self.seed)
        shares = {name: round(self.batch_size * getattr(self, name)) for name in ("synthetic", "real")}
        for name, n in shares.items():
            if getattr(self, name) and not n:
                raise ValueError(f"{name} = {getattr(self, name)} of batch_size {self.batch_size} rounds to no "
                                 f"image per batch; raise batch_size or set {name} 0")
        if self.supervision == "full" and self.batch_size - sum(shares.values()) < 1:
            raise ValueError(f"batch_size {self.batch_size} with synthetic {self.synthetic} and real {self.real} "
                             f"({shares['synthetic']} + {shares['real']} images) leaves no place for the "
                             "generators' fakes; raise batch_size")
        if self.device in ("cuda", "mps"):
            import torch  # only for an accelerator asked for by name: checking params imports no torch else

            found = torch.cuda.is_available() if self.device == "cuda" else torch.backends.mps.is_available()
            if not found:
                raise ValueError(f"device = {self.device}, but this machine has no {self.device.upper()} device "
                                 "torch can use; use auto or cpu")


@dataclass(frozen=True)
class PretrainParams:
    """The pretrain stage (stages/pretrain.py): self-blends of the real training faces only."""

    epochs: int = 12  # 0 = no pretraining (the file then holds the seeded initial weights)
    steps_per_epoch: int = 50  # of `batch_size` images; the cosine schedule runs over all epochs' steps
    batch_size: int = 16
    lr: float = 0.001
    real: float = 0.25  # share of each batch made of plain real faces (empty masks); the rest are self-blends
    blends: list[str] = field(default_factory=lambda: list(CLASSIC_BLENDS))  # their kinds (localize/synthetic.py)
    loss: str = choice(*LOSSES, default="dice-bce")
    seed: int = 0
    device: str = choice("auto", "cpu", "cuda", "mps", default="auto")
    precision: str = choice("auto", "fp32", "bf16", "fp16", default="fp32")

    def validate(self) -> None:
        check_blends(self.blends)
        if not 0 <= self.epochs <= 10_000:
            raise ValueError(f"epochs must be in [0, 10000], got {self.epochs}")
        if not 1 <= self.steps_per_epoch <= 1_000_000:
            raise ValueError(f"steps_per_epoch must be in [1, 1000000], got {self.steps_per_epoch}")
        if not 2 <= self.batch_size <= 4096:
            raise ValueError(f"batch_size must be in [2, 4096], got {self.batch_size}")
        if not 0 < self.lr <= 1:
            raise ValueError(f"lr must be in (0, 1], got {self.lr}")
        if not 0 <= self.real < 1:
            raise ValueError(f"real must be in [0, 1), got {self.real}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


# The largest share of the image a min_region candidate may be: a region dropped as noise must stay small.
MAX_MIN_REGION = 0.05
# The default candidates (evaluate, robustness, texture): up to 0.8% of the image, 33 px at 64 px.
MIN_REGION_CANDIDATES = (0.0, 0.002, 0.004, 0.008)


def check_min_region(candidates: list[float]) -> None:
    """min_region (evaluate, robustness, texture): a non-empty list of shares of the image in [0, 0.05]."""
    if not candidates:
        raise ValueError("min_region is empty; list shares of the image in [0, 0.05], e.g. [0] for none")
    bad = [c for c in candidates if not 0 <= c <= MAX_MIN_REGION]
    if bad:
        raise ValueError(f"min_region holds {', '.join(map(str, bad))}; each must be a share of the image "
                         f"in [0, {MAX_MIN_REGION}] (0 = no post-process)")


@dataclass(frozen=True)
class TextureParams:
    """The texture baseline (localize/texture.py, stages/texture.py)."""

    pixels: int = 80_000  # training pixels sampled per split
    real: float = 0.25  # share of those pixels taken from real training faces (all real)
    iterations: int = 100  # boosting iterations (prediction time is proportional to them)
    learning_rate: float = 0.2
    leaves: int = 63  # max leaf nodes per tree
    smooth: int = 5  # side of the box filter over the probability map (1 = none)
    stride: int = 2  # classify every stride-th pixel and row, interpolate between (1 = every pixel)
    seed: int = 0
    # As evaluate's: the same post-process, chosen on the split's valid fakes and real faces.
    min_region: list[float] = field(default_factory=lambda: list(MIN_REGION_CANDIDATES))

    def validate(self) -> None:
        check_min_region(self.min_region)
        if not 1_000 <= self.pixels <= 5_000_000:
            raise ValueError(f"pixels must be in [1000, 5000000], got {self.pixels}")
        if not 0 <= self.real < 1:
            raise ValueError(f"real must be in [0, 1), got {self.real}")
        if not 1 <= self.iterations <= 2_000:
            raise ValueError(f"iterations must be in [1, 2000], got {self.iterations}")
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"learning_rate must be in (0, 1], got {self.learning_rate}")
        if not 2 <= self.leaves <= 255:
            raise ValueError(f"leaves must be in [2, 255], got {self.leaves}")
        if not 1 <= self.stride <= 8:
            raise ValueError(f"stride must be in [1, 8], got {self.stride}")
        if self.smooth < 1 or self.smooth % 2 == 0:
            raise ValueError(f"smooth must be an odd number >= 1, got {self.smooth}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class CeilingParams:
    """The visible-change ceiling (localize/demo/ceiling.py, stages/ceiling.py)."""

    min_change: float = 3.0  # grey levels (0-255, max over channels) that count as a visible change

    def validate(self) -> None:
        if not 0 < self.min_change <= 255:
            raise ValueError(f"min_change must be in (0, 255], got {self.min_change}")


@dataclass(frozen=True)
class EvaluateParams:
    # Dolos' protocol fixes the threshold at 0.5; other values are for exploration only.
    threshold: float = 0.5
    batch_size: int = 64
    # How an image's fake-probability map becomes one detection score.
    detection_score: str = choice("max", "mean", default="max")
    overlay_images: int = 6
    bootstrap: int = 1000  # resamples of the test images behind every 95% interval
    seed: int = 0  # of the bootstrap's resamples
    # Test-time augmentation: `flip` averages each map with its mirror image's (twice the cost).
    tta: str = choice("none", "flip", default="none")
    # Other Dolos-layout roots whose test splits every model is also scored on (localize/cross_root.py).
    also: list[str] = field(default_factory=list)
    # Shares of the image: each model drops flagged regions smaller than the one best on its valid split
    # (localize/regions.py). [0] = no post-process.
    min_region: list[float] = field(default_factory=lambda: list(MIN_REGION_CANDIDATES))

    def validate(self) -> None:
        check_threshold(self.threshold)
        check_min_region(self.min_region)
        if any(not root.strip() for root in self.also):
            raise ValueError("also holds an empty root; list folders that hold real/ and fake/")
        check_range("batch_size", self.batch_size, 1, MAX_BATCH)
        check_range("bootstrap", self.bootstrap, 1, MAX_BOOTSTRAP)
        check_range("overlay_images", self.overlay_images, 0, MAX_OVERLAYS)
        _check_seed(self.seed)


def default_sweep() -> dict[str, list[float]]:
    return {"jpeg": [95, 75, 50], "downscale": [0.75, 0.5], "blur": [0.5, 1, 2], "noise": [2, 5, 10]}


@dataclass(frozen=True)
class RobustnessParams:
    sweep: dict[str, list[float]] = field(default_factory=default_sweep)
    # `single`: the models trained on one generator (the in-domain rows, the cheap default);
    # `all`: every model; or a list of split names.
    models: str | list[str] = "single"
    # Per test set, the first ones by id; null = all. A cap keeps the default sweep within minutes
    # on a CPU: inference, not decoding, is its cost (benchmarks/bench_robustness.py).
    max_images: int | None = 100
    threshold: float = 0.5
    batch_size: int = 64
    detection_score: str = choice("max", "mean", default="max")
    bootstrap: int = 1000
    seed: int = 0  # of the noise and of the bootstrap's resamples
    workers: int = 0  # decoding processes; 0 = every core
    # As evaluate's, chosen on the clean valid split.
    min_region: list[float] = field(default_factory=lambda: list(MIN_REGION_CANDIDATES))

    def validate(self) -> None:
        check_threshold(self.threshold)
        check_min_region(self.min_region)
        if not self.sweep:
            raise ValueError(f"sweep is empty; give strengths for any of: {', '.join(KINDS)}")
        for kind, strengths in self.sweep.items():
            if not strengths:
                raise ValueError(f"sweep.{short(kind)} lists no strength")
            if len(strengths) > MAX_STRENGTHS:
                raise ValueError(f"sweep.{kind} lists {len(strengths)} strengths; at most {MAX_STRENGTHS}")
            for s in strengths:
                check(kind, s)
            labels = [label(kind, float(s)) for s in strengths]
            twice = sorted({lab for lab in labels if labels.count(lab) > 1})
            if twice:
                raise ValueError(f"sweep.{kind} lists {', '.join(twice)} more than once: give each strength once")
        if isinstance(self.models, str) and self.models not in MODEL_SETS:
            raise ValueError(f"models = {short(self.models)}; choose one of: {', '.join(MODEL_SETS)}, "
                             "or a list of trained splits")
        if isinstance(self.models, list) and not self.models:
            raise ValueError("models = []: list at least one trained split, or use single or all")
        check_range("batch_size", self.batch_size, 1, MAX_BATCH)
        check_range("bootstrap", self.bootstrap, 1, MAX_BOOTSTRAP)
        if self.max_images is not None:
            check_range("max_images", self.max_images, 1, MAX_IMAGES, "or null (all)")
        _check_seed(self.seed)
        if self.workers < 0:
            raise ValueError(f"workers = {self.workers}: use 0 (all cores) or a positive count")

    def cells(self) -> list[tuple[str, float]]:
        """(kind, strength) of every perturbation, the clean copy first."""
        return [(CLEAN, 0.0)] + [(k, float(s)) for k, strengths in self.sweep.items() for s in strengths]
