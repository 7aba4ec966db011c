"""Train and score one segmentation network (a backbone with ``core.spec.Decoder``) on image + mask data.

The recipe mirrors the classifier's (``trainer.train``): the same ``TrainConfig`` (optimizer, warm-up and
cosine schedule, batch size, seed, time budget), the eight dihedral views and optional random resized
crops, here applied to each image and its mask together (``augment.paired_*``); per-pixel cross-entropy,
optionally class-weighted; the epoch kept is the best validation mIoU (ties to the lower loss).
Distillation, samplers and logit adjustment are classification-only and refused here.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from defect_nas.core.errors import DefectNasError
from defect_nas.evaluators.augment import paired_resized_crop, paired_views, views_for
from defect_nas.evaluators.runtime import Runtime
from defect_nas.evaluators.seg_metrics import SegScores, confusion, scores
from defect_nas.evaluators.trainer import TrainConfig, _to_input, model_in_channels, optimizer_for, warmup_cosine


@dataclass
class SegData:
    """The split as in-memory tensors: images uint8 [N, C, S, S], masks uint8 [N, S, S]."""

    x_train: torch.Tensor
    m_train: torch.Tensor
    x_val: torch.Tensor
    m_val: torch.Tensor
    class_names: tuple[str, ...]


@dataclass
class SegResult:
    best_epoch: int
    val: SegScores
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0
    epochs_run: int = 0
    stop_reason: str = "epochs"  # "epochs" | "time"


def pixel_weights(masks: torch.Tensor, classes: int) -> torch.Tensor:
    """Inverse square-root pixel frequency, mean 1: rare defect classes count more, without the inverse
    frequency's 50x weights that make a net paint defects everywhere."""
    counts = torch.bincount(masks.flatten().long(), minlength=classes).double().clamp(min=1)
    w = counts.rsqrt()
    return (w / w.mean()).float()


def _check(config: TrainConfig) -> None:
    if config.kd != "none" or config.sampler != "shuffle" or config.logit_adjust:
        raise DefectNasError("segmentation trains without distillation, samplers or logit adjustment: leave "
                             "--kd, --sampler and --logit-adjust at their defaults")


def train_segmenter(model: nn.Module, data: SegData, config: TrainConfig, runtime: Runtime | None = None,
                    on_epoch: Callable[[int, float, dict], None] | None = None) -> SegResult:
    """Train ``model`` in place; it ends with the weights of its best validation epoch (mIoU).
    ``on_epoch(epoch, val_miou, record)`` after each epoch: the search's pruner reports there (and may
    raise ``optuna.TrialPruned``)."""
    _check(config)
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    rt = runtime or Runtime()
    dev = rt.torch_device
    g = torch.Generator(device=dev).manual_seed(config.seed)
    k = len(data.class_names)
    x_train, m_train = data.x_train.to(dev), data.m_train.to(dev)
    channels = model_in_channels(model)
    allowed = views_for(*x_train.shape[-2:], device=dev)
    model.to(dev)
    weights = pixel_weights(data.m_train, k).to(dev) if config.class_weights == "balanced" else None
    lr = config.learning_rate
    opt = optimizer_for(model, config)
    steps = max(1, len(x_train) // config.batch_size)
    planned = config.epochs
    warmup = min(int(config.warmup_epochs * steps), steps * planned // 4)

    def lr_at(step: int) -> float:
        return warmup_cosine(step, lr, warmup, steps * planned)

    best_key, best_epoch, best_state, best_scores = (-1.0, 0.0), 0, None, None
    history: list[dict] = []
    step, seen, epoch, stop = 0, 0, 0, "epochs"
    while epoch < planned:
        epoch += 1
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(x_train), generator=g, device=dev)
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        for b in range(steps):
            idx = order[b * config.batch_size: (b + 1) * config.batch_size]
            x, m = _to_input(x_train[idx], channels, False), m_train[idx]
            if config.views:
                x, m = paired_views(x, m, allowed[torch.randint(0, len(allowed), (len(idx),), generator=g,
                                                                device=dev)])
            if config.crop_scale < 1:
                x, m = paired_resized_crop(x, m, config.crop_scale, g)
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            with rt.autocast(rt.train_precision):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), m.long(), weight=weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            step += 1
            seen += len(idx)
        val, val_loss = evaluate(model, data.x_val, data.m_val, k, rt, weights)
        elapsed = time.perf_counter() - start
        history.append({"epoch": epoch, "loss": loss_sum.item() / steps, "val_miou": val.miou, "val_loss": val_loss,
                        "lr": lr_at(step - 1), "seconds": elapsed})
        if on_epoch is not None:
            on_epoch(epoch, val.miou, history[-1])
        if (val.miou, -val_loss) > (best_key[0], best_key[1] + 1e-4):
            best_key, best_epoch, best_scores = (val.miou, -val_loss), epoch, val
            best_state = copy.deepcopy(model.state_dict())
        if config.time_budget_s is not None:
            epoch_s = time.perf_counter() - t0
            if epoch == 1:  # size the cosine to the time the first epoch says fits
                planned = max(1, min(config.epochs, int(config.time_budget_s / max(epoch_s, 1e-6))))
            if epoch < planned and elapsed + epoch_s > config.time_budget_s:
                stop = "time"
                break
    seconds = time.perf_counter() - start
    if best_state is not None:
        model.load_state_dict(best_state)
    assert best_scores is not None
    return SegResult(best_epoch, best_scores, history, seconds, seen / seconds if seconds else 0.0, epoch, stop)


@torch.no_grad()
def predict_masks(model: nn.Module, x_uint8: torch.Tensor, runtime: Runtime | None = None,
                  batch: int = 32) -> np.ndarray:
    """Class-index masks uint8 [N, S, S] (argmax of the per-pixel logits)."""
    return _forward(model, x_uint8, None, 0, runtime or Runtime(), None, batch)[0]


@torch.no_grad()
def evaluate(model: nn.Module, x_uint8: torch.Tensor, masks: torch.Tensor, classes: int,
             runtime: Runtime | None = None, weights: torch.Tensor | None = None) -> tuple[SegScores, float]:
    """Scores and mean per-pixel loss of ``model`` on images and their masks."""
    pred, loss = _forward(model, x_uint8, masks, classes, runtime or Runtime(), weights, 32)
    return scores(confusion(pred, masks.numpy(), classes)), loss


def _forward(model: nn.Module, x_uint8: torch.Tensor, masks: torch.Tensor | None, classes: int, rt: Runtime,
             weights: torch.Tensor | None, batch: int) -> tuple[np.ndarray, float]:
    was = model.training
    model.eval()
    channels, dev = model_in_channels(model), rt.torch_device
    out, loss_sum = [], 0.0
    for i in range(0, len(x_uint8), batch):
        x = _to_input(x_uint8[i: i + batch].to(dev), channels, False)
        with rt.autocast("fp32"):  # scored as the model deploys (ONNX Runtime, fp32)
            logits = model(x).float()
        if masks is not None:
            loss_sum += F.cross_entropy(logits, masks[i: i + batch].to(dev).long(), weight=weights,
                                        reduction="sum").item() / logits[0, 0].numel()
        out.append(logits.argmax(1).to(torch.uint8).cpu().numpy())
    model.train(was)
    return np.concatenate(out), loss_sum / max(1, len(x_uint8))
