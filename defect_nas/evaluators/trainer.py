"""The fast candidate trainer: in-memory batches, tensor augmentation, bf16 + channels_last.

Candidate training dominates a search on a 2-core CPU, so everything per step is a tensor op
on a uint8 stack already in memory: no DataLoader, no decoding, no per-image Python. The
teacher enters only as precomputed logits per (image, view) (see ``evaluators.augment``).
Fidelity (epochs, input size) is a parameter so a search can train cheap proxies first, and a
per-epoch callback lets a pruner stop weak candidates (it may raise, e.g. ``optuna.TrialPruned``).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from defect_nas.core.errors import DefectNasError
from defect_nas.data.preprocess import resize_uint8
from defect_nas.evaluators.augment import apply_views, random_resized_crop, views_for
from defect_nas.evaluators.distill import DistillLoss
from defect_nas.evaluators.metrics import Metrics, compute_metrics
from defect_nas.evaluators.runtime import Runtime, resolve_precision


@dataclass(frozen=True)
class TrainConfig:
    """How one candidate is trained. ``input_size`` None = the data's own size."""

    epochs: int = 30
    input_size: int | None = None
    batch_size: int = 32
    optimizer: str = "adamw"  # "adamw" | "sgd"
    lr: float | None = None  # default: 2e-3 for AdamW, 0.05 for SGD
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    views: bool = True  # the 8 flips/rotations
    crop_scale: float = 1.0  # < 1: random resized crops covering this much area at least
    channels_last: bool = True
    kd: str = "none"  # "none" | "l2" (Kim et al.) | "kl" (Hinton)
    kd_alpha: float = 0.5
    kd_temperature: float = 4.0
    class_weights: str = "none"  # "none" | "balanced": weighted loss for imbalanced data
    sampler: str = "shuffle"  # "shuffle" | "balanced": class-balanced sampling
    logit_adjust: float = 0.0  # tau of Menon et al.'s logit-adjusted loss: the loss sees logits + tau * log(prior)
    patience: int | None = None  # a validation plateau (epochs without a better (accuracy, loss), counted
    # in the schedule's second half, never while validation is at 100%) ends training with a short anneal
    time_budget_s: float | None = None  # train at most this long: ``epochs`` is then a cap, see ``train``
    ema_epochs: float | None = None  # in the schedule's second half, validate and keep an exponential
    # moving average of the weights (horizon: this many epochs, at most a tenth of the schedule; see ``train``)
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 2, "batch size must be at least 2"),
            (self.optimizer in ("adamw", "sgd"), f"optimizer {self.optimizer!r} must be adamw or sgd"),
            (0 < self.crop_scale <= 1, "crop scale must be in (0, 1]"),
            (self.class_weights in ("none", "balanced"), "class weights must be none or balanced"),
            (self.sampler in ("shuffle", "balanced"), "sampler must be shuffle or balanced"),
            (math.isfinite(self.logit_adjust) and 0 <= self.logit_adjust <= 4, "logit adjustment must be in 0..4"),
            (self.input_size is None or 32 <= self.input_size <= 512, "input size must be in 32..512"),
            (self.patience is None or self.patience >= 1, "patience must be at least 1"),
            (self.time_budget_s is None or self.time_budget_s > 0, "time budget must be positive"),
            (self.ema_epochs is None or self.ema_epochs > 0, "EMA horizon must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise DefectNasError(f"training config: {message}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (2e-3 if self.optimizer == "adamw" else 0.05)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainData:
    """The split as in-memory tensors; ``teacher_logits`` is [N_train, 8, K] (per view) or None."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    class_names: tuple[str, ...]
    teacher_logits: torch.Tensor | None = None
    negative_classes: tuple[int, ...] = ()
    metric: str = "accuracy"  # what validation selects on: "accuracy", or "balanced_accuracy" on imbalanced data


@dataclass
class TrainResult:
    best_epoch: int
    val_accuracy: float  # of the best epoch, in ``TrainData.metric`` (plain or balanced accuracy)
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0
    precision: str = "fp32"
    stopped_early: bool = False
    planned_epochs: int = 0  # the schedule's length (sized to the time budget when there is one)
    stop_reason: str = "epochs"  # "epochs" | "plateau" | "time"


def optimizer_for(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """``config.optimizer`` over the trainable parameters (SGD: Nesterov momentum)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum,
                               weight_decay=config.weight_decay, nesterov=True)
    return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)


def warmup_cosine(step: int, lr: float, warmup: int, total: int) -> float:
    """The learning rate at ``step``: linear warm-up over ``warmup`` steps, then a cosine to 0 at ``total``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return 0.5 * lr * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def _to_input(x_uint8: torch.Tensor, channels: int, channels_last: bool) -> torch.Tensor:
    x = x_uint8.float().div_(255)
    if x.shape[1] != channels:  # grayscale data into an RGB model
        x = x.expand(-1, channels, -1, -1)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def model_in_channels(model: nn.Module) -> int:
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return first.in_channels


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, *, input_size: int | None = None, precision: str = "auto",
    channels_last: bool = True, batch_size: int = 128, view: int = 0,
) -> torch.Tensor:
    """Logits (float32, on the CPU) for a uint8 stack, in eval mode, at ``input_size``, in one view,
    computed in batches on the model's device."""
    device = next(model.parameters()).device
    precision = resolve_precision(precision, device.type)
    if input_size:
        images = resize_uint8(images, input_size)
    channels = model_in_channels(model)
    was_training = model.training
    model.eval()
    out = []
    try:
        for chunk in images.split(batch_size):
            chunk = chunk.to(device, non_blocking=True)
            if view:
                chunk = apply_views(chunk, torch.full((len(chunk),), view, device=device))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                out.append(model(_to_input(chunk, channels, channels_last)).float())
    finally:
        model.train(was_training)
    return torch.cat(out).cpu() if out else torch.empty(0)


def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...], *,
    input_size: int | None = None, precision: str = "fp32", negative_classes: tuple[int, ...] = (),
) -> Metrics:
    """Metrics of ``model`` on a uint8 stack, in fp32 by default: a model trained under bf16 autocast
    scored 98.6% test in bf16 but 97.5% in fp32, as ONNX Runtime runs it (the NEU reference winner)."""
    logits = predict_logits(model, images, input_size=input_size, precision=precision)
    return compute_metrics(logits.argmax(1), labels, class_names, negative_classes or None)


def _class_weights(y: torch.Tensor, k: int) -> torch.Tensor:
    counts = torch.bincount(y, minlength=k).float().clamp_min(1)
    return counts.sum() / (k * counts)


def _logit_adjustment(y: torch.Tensor, k: int, tau: float) -> torch.Tensor:
    """``tau * log(class prior)``, added to the logits in the loss only (Menon et al., 2021): the
    model then predicts as if the classes were balanced, without resampling or reweighting."""
    if tau == 0:
        return torch.zeros(k)
    prior = torch.bincount(y.cpu(), minlength=k).float().clamp_min(1)
    return tau * (prior / prior.sum()).log()


def _epoch_order(y: torch.Tensor, k: int, sampler: str, g: torch.Generator) -> torch.Tensor:
    if sampler == "balanced":
        w = _class_weights(y, k)[y]
        return torch.multinomial(w, len(y), replacement=True, generator=g)
    return torch.randperm(len(y), generator=g, device=y.device)


def train(
    model: nn.Module,
    data: TrainData,
    config: TrainConfig,
    on_epoch: Callable[[int, float, dict], None] | None = None,
    runtime: Runtime | None = None,
) -> TrainResult:
    """Train ``model`` in place; it ends with the weights of its best validation epoch.

    ``runtime`` says where and in what precision (default: CPU, bf16 where the CPU has it); it is
    not part of ``config`` because it describes the machine, not the recipe. On a GPU the uint8
    data, the augmentation (with a seeded device generator) and the loss sum stay on the device:
    one host synchronisation per epoch, not per step. The model is left on the runtime's device.

    With ``config.time_budget_s`` the cosine schedule is sized to the time (its length measured
    from the first epochs, re-measured in the first half if the pace drifts), ``epochs`` is only a
    cap, and training stops before an epoch that would overrun the budget."""
    start = time.perf_counter()  # the budget includes set-up
    torch.manual_seed(config.seed)
    rt = runtime or Runtime()
    dev = rt.torch_device
    g = torch.Generator(device=dev).manual_seed(config.seed)
    precision = rt.train_precision
    k = len(data.class_names)
    if config.kd != "none" and data.teacher_logits is None:
        raise DefectNasError("distillation asked for (kd != none) but no teacher logits were given")
    x_train = resize_uint8(data.x_train, config.input_size) if config.input_size else data.x_train
    x_val = resize_uint8(data.x_val, config.input_size) if config.input_size else data.x_val
    x_train, y_train, x_val = x_train.to(dev), data.y_train.to(dev), x_val.to(dev)  # resident (no-ops on the CPU)
    teacher = data.teacher_logits.to(dev) if data.teacher_logits is not None else None
    channels = model_in_channels(model)
    allowed = views_for(*x_train.shape[-2:], device=dev)
    model.to(dev)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    weights = _class_weights(data.y_train, k) if config.class_weights == "balanced" else None
    loss_fn = DistillLoss(
        kind=config.kd, alpha=config.kd_alpha if config.kd != "none" else 0.0, temperature=config.kd_temperature,
        label_smoothing=config.label_smoothing, class_weights=weights,
    ).to(dev)
    adjust = _logit_adjustment(data.y_train, k, config.logit_adjust).to(dev)
    lr = config.learning_rate
    opt = optimizer_for(model, config)
    steps_per_epoch = max(1, len(x_train) // config.batch_size)  # drop the ragged last batch (BN)
    planned = config.epochs
    warmup = min(int(config.warmup_epochs * steps_per_epoch), steps_per_epoch * planned // 4)

    def lr_at(step: int) -> float:  # reads ``planned``, which a time budget may change
        return warmup_cosine(step, lr, warmup, steps_per_epoch * planned)

    ema: AveragedModel | None = None
    best_key, best_epoch, best_state, history, since_best = (-1.0, 0.0), 0, None, [], 0
    step, seen, stop_reason, epoch, durations = 0, 0, "epochs", 0, []
    while epoch < planned:
        epoch += 1
        epoch_start = time.perf_counter()
        if config.ema_epochs and ema is None and epoch > planned / 2:
            # the average starts from the raw weights once the learning rate is below half its peak, over
            # at most a tenth of the schedule: averaged from the start of a 28-40-epoch schedule it mixed
            # far-apart high-rate weights and scored 30-46% where the raw weights scored 98%
            ema = _ema(model, min(config.ema_epochs, planned / 10), steps_per_epoch)
        model.train()
        order = _epoch_order(y_train, k, config.sampler, g)
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        for b in range(steps_per_epoch):
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            views = (allowed[torch.randint(0, len(allowed), (len(idx),), generator=g, device=dev)] if config.views
                     else torch.zeros(len(idx), device=dev))
            if config.views:
                xb = apply_views(xb, views)
            x = _to_input(xb, channels, config.channels_last)
            if config.crop_scale < 1:
                x = random_resized_crop(x, config.crop_scale, g)
                if config.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
            t = teacher[idx, views.long()] if loss_fn.needs_teacher else None
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            with rt.autocast(precision):
                logits = model(x)
            loss = loss_fn(logits.float() + adjust, yb, t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            loss_sum += loss.detach()
            step += 1
            seen += len(idx)
        record = {"epoch": epoch, "planned": planned, "loss": loss_sum.item() / steps_per_epoch}  # one host sync
        kept = ema.module if ema is not None else model  # the weights validated, kept and returned
        val, val_loss = _validate(kept, x_val, data)
        if ema is not None:  # the raw weights' score too, so a learning curve shows what the average adds
            raw, raw_loss = _validate(model, x_val, data)
            record.update(val_accuracy_raw=raw.accuracy, val_loss_raw=raw_loss, val_accuracy_avg=val.accuracy)
            if (getattr(raw, data.metric), -raw_loss) > (getattr(val, data.metric), -val_loss):
                # validation picks between the two like it picks the epoch: on a short schedule the
                # average can trail the raw weights (28 epochs: 97.50% vs 98.89%, README)
                kept, val, val_loss = model, raw, raw_loss
            record["kept"] = "ema" if kept is not model else "raw"
        elapsed = time.perf_counter() - start
        durations.append(time.perf_counter() - epoch_start)
        record.update(val_accuracy=val.accuracy, val_balanced_accuracy=val.balanced_accuracy, val_loss=val_loss,
                      seconds=elapsed, lr=lr_at(step - 1))
        history.append(record)
        # best = highest validation accuracy, ties to the lower validation loss (a later, annealed epoch)
        score = getattr(val, data.metric)  # the selection metric (balanced accuracy on imbalanced data)
        if (score, -val_loss) > (best_key[0], best_key[1] + 1e-3):
            best_key, best_epoch, since_best = (score, -val_loss), epoch, 0
            best_state = copy.deepcopy(kept.state_dict())
        elif epoch > planned / 2 and best_key[0] < 100.0:
            # a plateau counts only once the learning rate fell below half its peak (before that a flat
            # validation curve is the high rate's noise), and never at 100%: a saturated validation set
            # cannot tell a converged net from a half-annealed one (NEU, 10M MACs: a seed stopped at 124
            # of 150 epochs scored 98.89% test, the same net over the full schedule 99.72 +- 0.28%,
            # results/benchmarks/target_10m/)
            since_best += 1
        if on_epoch is not None:
            on_epoch(epoch, score, record)  # may raise to prune
        if config.patience is not None and since_best >= config.patience and stop_reason != "plateau":
            # a plateau ends the schedule with a short anneal, not on the spot: stopping at a still-high
            # learning rate lost 2 points on NEU (results/benchmarks/precision.* and README)
            stop_reason, planned = "plateau", min(planned, epoch + max(2, round(0.1 * planned)))
        if config.time_budget_s is not None:
            epoch_s = _typical_epoch_seconds(durations)
            fits = max(epoch, min(config.epochs, epoch + int((config.time_budget_s - elapsed) / epoch_s)))
            # size the schedule to the time from the epochs measured so far: after each of the first
            # three; later, shorten it whenever it would overrun (the learning rate then only falls),
            # and lengthen it in the first half if the pace got more than 10% faster
            late = fits < planned - max(1.0, 0.05 * planned)
            grow = stop_reason != "plateau" and (epoch <= 3 or (epoch <= planned / 2 and fits > 1.1 * planned))
            if grow or late:
                planned = fits
                if fits < config.epochs and fits == epoch:  # the time, not the cap, ended the schedule
                    stop_reason = "time"
            if epoch < planned and elapsed + epoch_s > config.time_budget_s:
                stop_reason = "time"
                break
    seconds = time.perf_counter() - start
    if best_state is not None:
        model.load_state_dict(best_state)
    return TrainResult(best_epoch, best_key[0], history, seconds, seen / seconds if seconds else 0.0, precision,
                       stop_reason != "epochs", planned, stop_reason)


def _ema(model: nn.Module, horizon_epochs: float, steps_per_epoch: int) -> AveragedModel:
    """An exponential moving average of the weights (batch-norm statistics included) whose
    horizon, 1 / (1 - decay) steps, is ``horizon_epochs`` epochs."""
    decay = 1.0 - 1.0 / max(1.0, horizon_epochs * steps_per_epoch)
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _validate(model: nn.Module, x_val: torch.Tensor, data: TrainData) -> tuple[Metrics, float]:
    """Validation metrics and loss, in fp32: scored as the model deploys (ONNX Runtime, fp32)."""
    logits = predict_logits(model, x_val, precision="fp32")
    metrics = compute_metrics(logits.argmax(1), data.y_val, data.class_names, data.negative_classes or None)
    return metrics, nn.functional.cross_entropy(logits, data.y_val).item()


def _typical_epoch_seconds(durations: list[float]) -> float:
    """The median of the last (up to) five epoch durations: robust to the first epoch's one-off
    kernel set-up, and following the machine's current pace."""
    return max(1e-3, statistics.median_low(durations[-5:]))
