"""How a search trains on *this* data: proxy resolution, imbalance handling, and the escalation
when nothing learns.

Why: a recipe tuned on NEU (square, balanced, 200 px) ended in chance-level models on line data
(mostly defect-free parts, small defects): every trial named the defect-free class for every image.
So the recipe follows the data (``Recipe.for_data``), and when the first trials of a recipe all sit
at chance the workers move the whole study to the next rung of ``LADDER`` (full resolution, then a
lower learning rate, then distillation from an ImageNet-initialised teacher fine-tuned on this data
inside the run: Kim et al.'s transfer, tried where scratch training has failed, and dropped when the
teacher itself scores at chance) instead of spending the budget; when the last rung fails too, the
run ends with a diagnosis and no winner (``nothing_learned``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import optuna

from defect_nas.core.search_config import SearchConfig
from defect_nas.core.spec import GLOBAL_POOLS, ArchSpec
from defect_nas.data import Dataset, Split
from defect_nas.evaluators.scoring import chance_score, learned, selection_metric, val_counts

__all__ = ["NOTHING_LEARNED_ATTR", "Recipe", "auto_proxy_size", "check_recipe", "imbalance_method",
           "learned", "nothing_learned_message", "recipe_level"]

# How imbalanced classes are trained, by name (TrainConfig fields). ``auto`` picks AUTO_IMBALANCE on
# imbalanced data (largest class >= 1.5x the smallest), none otherwise: chosen by measurement,
# results/benchmarks/line_recipe.* (README, "Line data").
IMBALANCE = {"none": {}, "sampler": {"sampler": "balanced"}, "weights": {"class_weights": "balanced"},
             "logit": {"logit_adjust": 1.0}}
AUTO_IMBALANCE = "sampler"
PROXY_FLOOR = 100  # px: the proxy NEU's fidelity benchmark validated (Spearman 0.72 vs converged, 17 specs)
CHECK_TRIALS = 3  # finished trials of one recipe, all at chance, move the study to the next rung
TRANSFER_TEACHER = "efficientnet-lite0"  # its ImageNet weights ship with the install (no download at run time)
RECIPE_KD = "kl"  # SearchConfig's default distillation loss
LADDER = ({}, {"full_resolution": True}, {"full_resolution": True, "lr_scale": 0.2},
          {"full_resolution": True, "teacher": TRANSFER_TEACHER})


@dataclass(frozen=True)
class Recipe:
    """What a trial of the study trains with at escalation ``level`` (0: the default)."""

    level: int
    proxy_input_size: int
    imbalance: str
    lr_scale: float = 1.0
    teacher: str = "none"  # a transfer teacher the recipe distils from (the ladder's last rung), or none
    head_pool: str = "gap"  # a classifier head's global pooling (--head-pool)

    @classmethod
    def for_data(cls, config: SearchConfig, dataset: Dataset, level: int = 0) -> Recipe:
        size = int(dataset.images.shape[-1])
        rung = LADDER[min(level, len(LADDER) - 1)]
        if rung.get("full_resolution"):
            proxy = size
        else:
            proxy = config.proxy_input_size or auto_proxy_size(size)
        # a teacher the user asked for is already in every trial: the rung is then full resolution again
        teacher = rung.get("teacher", "none") if config.teacher == "none" else "none"
        return cls(level, proxy, imbalance_method(config.imbalance, dataset), rung.get("lr_scale", 1.0), teacher,
                   config.head_pool)

    def shape_head(self, spec: ArchSpec) -> ArchSpec:
        """``spec`` with this recipe's global pooling (a flatten head or a segmenter is left as it is)."""
        if spec.decoder is not None or spec.head.pool not in GLOBAL_POOLS or spec.head.pool == self.head_pool:
            return spec
        return replace(spec, head=replace(spec.head, pool=self.head_pool))

    def train_overrides(self) -> dict:
        """TrainConfig fields of this recipe (the learning rate is scaled by ``lr_scale`` from the default)."""
        out = dict(IMBALANCE[self.imbalance])
        if self.lr_scale != 1.0:
            out["lr"] = 2e-3 * self.lr_scale  # TrainConfig's AdamW default
        return out

    def describe(self) -> str:
        lr = f", learning rate x{self.lr_scale:g}" if self.lr_scale != 1.0 else ""
        how = {"none": "plain sampling", "sampler": "class-balanced sampling", "weights": "class-weighted loss",
               "logit": "logit-adjusted loss"}[self.imbalance]
        kd = (f", distilled from an ImageNet {self.teacher} fine-tuned on this data" if self.teacher != "none"
              else "")
        pool = ", max-pooled head" if self.head_pool == "gmp" else ""
        return f"{self.proxy_input_size} px, {how}{pool}{lr}{kd}"

    def to_dict(self) -> dict:
        return asdict(self)


RECIPE_ATTR, NOTHING_LEARNED_ATTR = "recipe_level", "nothing_learned"
RECIPE_TEACHER_ATTR = "recipe_teacher"  # the transfer rung's teacher: scores, and whether the students used it


def recipe_level(study: optuna.Study) -> int:
    return int(study.user_attrs.get(RECIPE_ATTR, 0))


def check_recipe(study: optuna.Study, dataset: Dataset, split: Split) -> int | None:
    """Before each trial: when the study's first CHECK_TRIALS finished trials of its current recipe all
    sit at chance, move the study to the next rung of the ladder (the first worker to see it does; the
    others follow); past the last rung, mark the study ``nothing_learned`` and stop (None). Returns
    the rung the next trial trains at."""
    if study.user_attrs.get(NOTHING_LEARNED_ATTR):
        return None
    level = recipe_level(study)
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get("recipe_level", 0) == level and t.user_attrs.get("val_accuracy") is not None]
    scores = [t.user_attrs["val_accuracy"] for t in done]
    if len(done) >= CHECK_TRIALS and not any(learned(v, dataset, split) for v in scores):
        if level + 1 >= len(LADDER):
            study.set_user_attr(NOTHING_LEARNED_ATTR, True)
            return None
        study.set_user_attr(RECIPE_ATTR, level + 1)
        level += 1
    return level


def auto_proxy_size(data_size: int) -> int:
    """Half the data's size, never below 100 px nor above the data's: NEU (200 px) keeps the 100 px
    proxy its fidelity benchmark validated; 128 px data trains its proxies at full size, 300 px
    data at 150 px (thin defects vanish when a 300-600 px image shrinks to 100)."""
    return min(data_size, max(PROXY_FLOOR, round(data_size / 2)))


def imbalance_method(choice: str, dataset: Dataset) -> str:
    """``auto`` -> AUTO_IMBALANCE on imbalanced data, none on balanced data; any other choice as is."""
    if choice != "auto":
        return choice
    return AUTO_IMBALANCE if selection_metric(dataset) == "balanced_accuracy" else "none"


def nothing_learned_message(dataset: Dataset, split: Split, tried: list[str], trials: int) -> str:
    """The one-line diagnosis of a run in which no recipe learned."""
    metric = "balanced accuracy" if selection_metric(dataset) == "balanced_accuracy" else "accuracy"
    chance = chance_score(dataset, val_counts(dataset, split))
    return (f"nothing learned on {dataset.name}: all {trials} trained candidates scored at chance "
            f"({chance:.1f}% {metric} on validation, {dataset.num_classes} classes) with every "
            f"recipe tried ({'; '.join(tried)}); check that each class folder holds what its name says and that "
            "the defects are visible at the input size, or add images")
