"""Knowledge-distillation losses: a small searched student learns from a big teacher's logits.

``total = alpha * kd + (1 - alpha) * ce`` where ``ce`` is cross-entropy on the labels (optional
label smoothing and class weights, with PyTorch's ``F.cross_entropy`` semantics: a weighted mean
normalised by the summed weights of the batch's targets) and ``kd`` is one of

* ``"l2"``: Kim et al.'s regression on teacher logits, their eq. 1,
  ``1/(2N) * sum_i ||f_T(x_i) - f_S(x_i)||_2^2`` -- half the batch mean of the squared L2 norm of
  the logit difference. It needs no temperature and keeps the teacher's logit scale.
* ``"kl"``: Hinton et al.'s ``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch.
  The ``T^2`` factor keeps its gradients on the scale of the CE term as ``T`` changes, so
  ``alpha`` means the same thing at any temperature.
* ``"none"``: no teacher; only ``alpha = 0`` is allowed (plain CE).

Teacher logits are detached: the teacher is never trained through this loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from defect_nas.core.errors import DefectNasError

__all__ = ["DistillLoss", "DistillParts", "kd_l2", "kd_kl"]

Kind = Literal["l2", "kl", "none"]
KINDS: tuple[str, ...] = ("l2", "kl", "none")


class DistillParts(NamedTuple):
    """The loss and its two terms (unweighted), so training can log what drives it."""

    total: Tensor
    kd: Tensor
    ce: Tensor


def kd_l2(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Kim et al. eq. 1: ``0.5 * mean_i ||t_i - s_i||^2`` (zero iff the logits are equal)."""
    diff = teacher_logits.detach() - student_logits
    return 0.5 * diff.pow(2).sum(dim=1).mean()


def kd_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton et al.: ``T^2 * KL(p_T || p_S)`` at temperature T, batch mean.

    Zero iff the softened softmaxes are equal.
    """
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach() / t, dim=1)
    return (t * t) * F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


class DistillLoss(nn.Module):
    """``alpha * kd + (1 - alpha) * ce``.

    An ``nn.Module`` so the class weights follow ``.to(device)``.
    """

    class_weights: Tensor | None

    def __init__(
        self,
        kind: Kind = "none",
        alpha: float = 0.0,
        temperature: float = 1.0,
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | Tensor | None = None,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise DefectNasError(f"distillation kind must be one of {KINDS}, got {kind!r}")
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise DefectNasError(f"distillation alpha must be in [0, 1], got {alpha}")
        if kind == "none" and alpha != 0.0:
            raise DefectNasError(
                f"distillation kind 'none' needs alpha = 0 (got {alpha}): choose 'l2' or 'kl'"
            )
        temperature = float(temperature)
        if not temperature > 0.0 or temperature != temperature:
            raise DefectNasError(f"distillation temperature must be > 0, got {temperature}")
        label_smoothing = float(label_smoothing)
        if not 0.0 <= label_smoothing < 1.0:
            raise DefectNasError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        weights: Tensor | None = None
        if class_weights is not None:
            weights = torch.as_tensor(class_weights, dtype=torch.float32).detach().clone()
            if weights.ndim != 1 or weights.numel() == 0:
                raise DefectNasError("class_weights must be a non-empty 1-D list of floats")
            if not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
                raise DefectNasError(
                    f"class_weights must be finite, >= 0 and not all 0, got {weights.tolist()}"
                )
        self.kind: str = kind
        self.alpha = alpha
        self.temperature = temperature
        self.label_smoothing = label_smoothing
        self.register_buffer("class_weights", weights)

    @property
    def needs_teacher(self) -> bool:
        """Whether calls must pass teacher logits (lets training skip the teacher otherwise)."""
        return self.kind != "none" and self.alpha > 0.0

    def parts(
        self, student_logits: Tensor, labels: Tensor, teacher_logits: Tensor | None = None
    ) -> DistillParts:
        """Total loss and its unweighted KD and CE terms (KD is 0 when not needed)."""
        if student_logits.ndim != 2:
            raise DefectNasError(
                f"student logits must be (batch, classes), got {tuple(student_logits.shape)}"
            )
        n, c = student_logits.shape
        if labels.shape != (n,):
            raise DefectNasError(
                f"labels must be ({n},) to match the logits, got {tuple(labels.shape)}"
            )
        weight = self.class_weights
        if weight is not None:
            if weight.numel() != c:
                raise DefectNasError(
                    f"class_weights has {weight.numel()} entries but the model has {c} classes"
                )
            weight = weight.to(device=student_logits.device, dtype=student_logits.dtype)
        ce = F.cross_entropy(
            student_logits, labels, weight=weight, label_smoothing=self.label_smoothing
        )
        if not self.needs_teacher:
            kd = student_logits.new_zeros(())
            return DistillParts(ce, kd, ce)
        if teacher_logits is None:
            raise DefectNasError(
                f"distillation '{self.kind}' with alpha={self.alpha} needs teacher logits"
            )
        if teacher_logits.shape != student_logits.shape:
            raise DefectNasError(
                f"teacher logits {tuple(teacher_logits.shape)} do not match student logits "
                f"{tuple(student_logits.shape)}: teacher and student must share the classes"
            )
        teacher_logits = teacher_logits.to(student_logits.dtype)
        if self.kind == "l2":
            kd = kd_l2(student_logits, teacher_logits)
        else:
            kd = kd_kl(student_logits, teacher_logits, self.temperature)
        total = self.alpha * kd + (1.0 - self.alpha) * ce
        return DistillParts(total, kd, ce)

    def forward(
        self, student_logits: Tensor, labels: Tensor, teacher_logits: Tensor | None = None
    ) -> Tensor:
        """The scalar training loss ``alpha * kd + (1 - alpha) * ce``."""
        return self.parts(student_logits, labels, teacher_logits).total

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind!r}, alpha={self.alpha}, temperature={self.temperature}, "
            f"label_smoothing={self.label_smoothing}"
        )
