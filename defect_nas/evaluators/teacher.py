"""The teacher (Kim et al.): VGG16 with ImageNet-initialised convs, fine-tuned whole, cached.

A search trains hundreds of students on the same data, so the teacher is trained once per
(dataset fingerprint, split, teacher config) and kept on disk with its logits for every training
image in each of the 8 flips/rotations the students train on. A second search on the same data
loads it instead of retraining; students then distil from the cached logits, with no teacher
forward pass in their training loop.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from defect_nas.core.errors import DefectNasError
from defect_nas.core.files import atomic_folder
from defect_nas.core.registry import Registry
from defect_nas.core.search_config import NO_TEACHER
from defect_nas.data import Dataset, Split
from defect_nas.evaluators.augment import NUM_VIEWS, views_for
from defect_nas.evaluators.pretrained import build_efficientnet_lite0_teacher, build_vgg16_teacher, default_cache_dir
from defect_nas.evaluators.runtime import Runtime
from defect_nas.evaluators.scoring import chance_score, learned, score_test, selection_metric, train_data, val_counts
from defect_nas.evaluators.trainer import TrainConfig, predict_logits, train

CACHE_VERSION = "teacher-v3"  # v2: test scored through evaluators.scoring (DAGM image vote); v3: class-balanced
# batches on imbalanced data
INITS = ("imagenet", "scratch", "scratch-bn")  # scratch-bn: VGG16 with batch norm (VGG16-BN), random init


@dataclass(frozen=True)
class TeacherConfig:
    """Kim et al.'s recipe by default (SGD, lr 1e-3, batch 32, whole net fine-tuned); the input
    size and epochs are reduced for a CPU budget (VGG16 costs 12 GMACs per 200x200 image)."""

    arch: str = "vgg16"  # "vgg16" | "efficientnet-lite0"
    init: str = "imagenet"  # one of INITS
    weights_file: str | None = None
    input_size: int = 128
    epochs: int = 8
    lr: float = 1e-3
    batch_size: int = 32
    freeze_blocks: int = 0  # VGG16: freeze the lowest N of its 5 conv blocks
    fc_hidden: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.arch not in TEACHERS:
            raise DefectNasError(f"unknown teacher {self.arch!r}: choose --teacher {', '.join(teacher_choices())}")
        if self.init not in INITS:
            raise DefectNasError(f"--teacher-init {self.init!r}: choose {', '.join(INITS)}")
        if self.init == "scratch-bn" and self.arch != "vgg16":
            raise DefectNasError(f"--teacher-init scratch-bn adds batch norm to VGG16; {self.arch} has its own: "
                                 "use --teacher-init scratch")
        if not 0 <= self.freeze_blocks <= 5:
            raise DefectNasError(f"--teacher-freeze {self.freeze_blocks}: VGG16 has 5 conv blocks (0..5)")
        if self.weights_file and not Path(self.weights_file).is_file():
            raise DefectNasError(f"--teacher-weights {self.weights_file}: no such file")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Teacher:
    """A trained teacher: its model, train-split logits per view, and how it scored."""

    model: nn.Module
    logits: torch.Tensor  # [N_train, 8, K], float32, rows in split.train order
    provenance: str
    val_accuracy: float
    test_accuracy: float
    test_metrics: dict
    seconds: float
    cache_dir: Path
    from_cache: bool
    config: TeacherConfig


def cache_key(dataset: Dataset, split: Split, config: TeacherConfig) -> str:
    parts = {
        "version": CACHE_VERSION,
        "fingerprint": dataset.fingerprint,
        "train": hashlib.sha256(split.train.numpy().tobytes()).hexdigest(),
        "val": hashlib.sha256(split.val.numpy().tobytes()).hexdigest(),
        "config": {k: v for k, v in config.to_dict().items() if k != "weights_file"},
        "weights_file": _file_digest(config.weights_file) if config.weights_file else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _vgg16(config: TeacherConfig, num_classes: int, in_channels: int) -> nn.Module:
    scratch = config.init.startswith("scratch")
    source = "scratch" if scratch else ("file" if config.weights_file else "auto")
    model = build_vgg16_teacher(num_classes, in_channels, source, weights_file=config.weights_file,
                                fc_hidden=config.fc_hidden, batch_norm=config.init == "scratch-bn")
    blocks_done = 0  # conv blocks end at their max-pool
    for layer in model.features:
        if blocks_done >= config.freeze_blocks:
            break
        for p in layer.parameters():
            p.requires_grad_(False)
        blocks_done += isinstance(layer, nn.MaxPool2d)
    return model


def _efficientnet_lite0(config: TeacherConfig, num_classes: int, in_channels: int) -> nn.Module:
    model, _ = build_efficientnet_lite0_teacher(num_classes, in_channels, pretrained=config.init == "imagenet")
    return model


#: Teacher architectures: name -> builder(config, num_classes, in_channels). ``--teacher none`` is
#: not an entry: it means no teacher, hence no distillation (``SearchConfig``, ``teacher_config``).
TEACHERS: Registry[Callable[[TeacherConfig, int, int], nn.Module]] = Registry("teacher", "--teacher")
TEACHERS.add("vgg16", _vgg16)
TEACHERS.add("efficientnet-lite0", _efficientnet_lite0)


def teacher_choices() -> tuple[str, ...]:
    """What ``--teacher`` accepts: every registered teacher, and ``none``."""
    return (*TEACHERS.names(), NO_TEACHER)


def teacher_config(arch: str, **fields) -> TeacherConfig | None:
    """The one way from command-line / config choices to a teacher: ``none`` is no teacher."""
    return None if arch == NO_TEACHER else TeacherConfig(arch=arch, **fields)


def build_teacher(config: TeacherConfig, num_classes: int, in_channels: int) -> nn.Module:
    return TEACHERS.get(config.arch)(config, num_classes, in_channels)


def teacher_logits(model: nn.Module, images: torch.Tensor, input_size: int) -> torch.Tensor:
    """[N, 8, K] logits of each image in each of the 8 views the students train on (non-square images
    train on four views only; the other four slots repeat view 0 and are never read)."""
    allowed = set(views_for(*images.shape[-2:]).tolist()) if not input_size else set(range(NUM_VIEWS))
    logits = {v: predict_logits(model, images, input_size=input_size, view=v) for v in sorted(allowed)}
    return torch.stack([logits.get(v, logits[0]) for v in range(NUM_VIEWS)], 1)


def ensure_teacher(
    dataset: Dataset,
    split: Split,
    config: TeacherConfig,
    cache_root: Path | str | None = None,
    log: Callable[[str], None] = print,
    runtime: Runtime | None = None,
    time_budget_s: float | None = None,
) -> Teacher:
    """Load the cached teacher for this data, split and config, or train it (and cache it).
    ``time_budget_s`` caps the training (a search's share of its ``--time-budget``): a teacher cut
    short is cached all the same, so the search's workers load the same one, and every later load
    says it was cut short."""
    root = Path(cache_root) if cache_root else default_cache_dir()
    folder = root / "teachers" / cache_key(dataset, split, config)
    k, c = len(dataset.class_names), dataset.images.shape[1]
    if (folder / "meta.json").is_file():
        try:
            meta = json.loads((folder / "meta.json").read_text())
            model = build_teacher_for_load(config, k, c)
            model.load_state_dict(load_file(folder / "weights.safetensors"))
            logits = load_file(folder / "logits.safetensors")["train_views"]
            if meta.get("stop_reason") == "time":
                log(f"the cached teacher was cut short by a --time-budget: {meta['epochs_run']} of {config.epochs} "
                    f"epochs, {meta['val_accuracy']:.2f}% validation; remove {folder} to train it in full")
            return Teacher(model, logits, meta["provenance"], meta["val_accuracy"], meta["test_accuracy"],
                           meta["test_metrics"], meta["seconds"], folder, True, config)
        except Exception as e:  # a damaged cache entry is rebuilt, never trusted
            log(f"teacher cache {folder} is unreadable ({e.__class__.__name__}); retraining")
    log(f"training the {config.arch} teacher ({config.init} init, {config.epochs} epochs at "
        f"{config.input_size}px); cached in {folder} for later runs")
    start = time.perf_counter()
    torch.manual_seed(config.seed)  # reproducible initial weights (a scratch teacher's; `analyze` rebuilds them)
    model = build_teacher(config, k, c)
    provenance = getattr(model, "provenance", config.arch)
    data = train_data(dataset, split)
    tc = TrainConfig(epochs=config.epochs, input_size=config.input_size, batch_size=config.batch_size,
                     optimizer="sgd", lr=config.lr, weight_decay=5e-4, label_smoothing=0.0, seed=config.seed,
                     time_budget_s=time_budget_s,  # imbalanced data: balanced batches, as the students (nas.recipe)
                     sampler="balanced" if selection_metric(dataset) == "balanced_accuracy" else "shuffle")
    result = train(model, data, tc, on_epoch=lambda e, acc, rec: log(
        f"  teacher epoch {e}/{config.epochs}: val {acc:.2f}% ({rec['seconds']:.0f} s, "
        f"~{rec['seconds'] / e * (rec['planned'] - e) / 60:.0f} min left)"), runtime=runtime)
    test, _ = score_test(model, dataset, split, config.input_size)
    log("  teacher logits for the 8 views of each training image")
    logits = teacher_logits(model, dataset.images[split.train], config.input_size)  # on the training device
    model.cpu()
    seconds = time.perf_counter() - start
    if runtime is not None:
        runtime.release()  # the search's parent process keeps no GPU memory for the workers to miss
    meta = {"provenance": provenance, "initial_weights": "seeded", "val_accuracy": result.val_accuracy,
            "test_accuracy": test.accuracy,
            "test_metrics": test.to_dict(), "seconds": seconds, "config": config.to_dict(),
            # a schedule sized to the time budget ends as planned ("epochs") but short of config.epochs
            "stop_reason": "time" if len(result.history) < config.epochs else result.stop_reason,
            "epochs_run": len(result.history),
            "dataset_fingerprint": dataset.fingerprint, "torch": torch.__version__}
    _write_cache(folder, model, logits, meta)
    return Teacher(model, logits, provenance, result.val_accuracy, test.accuracy, test.to_dict(), seconds,
                   folder, False, config)


def usable_teacher(teacher: Teacher, dataset: Dataset, split: Split,
                   log: Callable[[str], None] = print) -> tuple[Teacher | None, str | None]:
    """The teacher, or (None, why) when its validation score is at chance (``scoring.learned``): its
    logits carry no knowledge, and students distilling from them learn noise (an 8-epoch VGG16 on a
    small imbalanced dataset stayed at 16.67%, benchmarks/budget_wall.py, 2026-12-04)."""
    if learned(teacher.val_accuracy, dataset, split):
        return teacher, None
    chance = chance_score(dataset, val_counts(dataset, split))
    why = (f"WARNING: the {teacher.config.arch} teacher scores {teacher.val_accuracy:.2f}% on validation, no better "
           f"than chance ({chance:.2f}%, within 3 standard errors of a guess): the students trained without "
           "distillation; give it more --teacher-epochs or --teacher-init imagenet, or use --teacher none")
    log(why)
    return None, why


def build_teacher_for_load(config: TeacherConfig, num_classes: int, in_channels: int) -> nn.Module:
    """The teacher's architecture without fetching pretrained weights (they come from the cache)."""
    init = config.init if config.init.startswith("scratch") else "scratch"
    return build_teacher(TeacherConfig(**{**config.to_dict(), "init": init, "weights_file": None}),
                         num_classes, in_channels)


def _write_cache(folder: Path, model: nn.Module, logits: torch.Tensor, meta: dict) -> None:
    """Written whole or not at all: a crash or Ctrl-C never leaves a half-written entry."""
    with atomic_folder(folder) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "weights.safetensors")
        save_file({"train_views": logits.contiguous()}, tmp / "logits.safetensors")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
