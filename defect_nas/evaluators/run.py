"""Train one architecture end to end and write its run folder (what ``defect-nas train`` does).

Kept apart from the CLI so the search engine and benchmarks call the same code path.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from defect_nas.core.cost import cost
from defect_nas.core.netscore import DEFAULT as NETSCORE
from defect_nas.core.netscore import netscore
from defect_nas.core.spec import ArchSpec
from defect_nas.evaluators.data import Dataset, Split
from defect_nas.evaluators.latency import measure_latency
from defect_nas.evaluators.runinfo import environment, new_run_dir, write_json
from defect_nas.evaluators.teacher import Teacher
from defect_nas.evaluators.trainer import TrainConfig, TrainData, evaluate, train
from defect_nas.search_spaces.build import build


@dataclass
class RunResult:
    spec: ArchSpec
    model: torch.nn.Module
    summary: dict
    run_dir: Path | None


def train_spec(
    spec: ArchSpec, dataset: Dataset, split: Split, config: TrainConfig, teacher: Teacher | None = None,
    on_epoch: Callable[[int, float, dict], None] | None = None, latency: bool = True,
) -> RunResult:
    """Build, train (distilling from ``teacher`` if given and config.kd != none), and measure."""
    size = config.input_size or dataset.images.shape[-1]
    if spec.input_size != size or spec.in_channels != dataset.images.shape[1]:
        spec = type(spec).from_dict({**spec.to_dict(), "input_size": size, "in_channels": spec.in_channels})
    torch.manual_seed(config.seed)  # the seed fixes the initial weights too
    model = build(spec)
    c = cost(spec)
    summary = train_module(model, dataset, split, config, teacher, on_epoch)
    summary.update({"arch": spec.name, "spec_digest": spec.digest(), "macs": c.macs, "params": c.params,
                    "netscore": netscore(max(summary["test_accuracy"], 1e-6), c.params, c.macs)})
    if latency:
        shape = (spec.in_channels, size, size)
        eager = measure_latency(model, shape, backend="eager", batch_size_throughput=32, repeats=20)
        summary["latency_ms"] = eager.latency_ms
        summary["throughput_img_s"] = eager.throughput_img_s
        summary["latency"] = eager.to_dict()
    return RunResult(spec, model, summary, None)


def train_module(
    model: torch.nn.Module, dataset: Dataset, split: Split, config: TrainConfig, teacher: Teacher | None = None,
    on_epoch: Callable[[int, float, dict], None] | None = None,
) -> dict:
    """Train any module on the split and score it on the test part: the one path that candidates,
    finalists and baselines share, so their numbers mean the same thing (image-level on DAGM)."""
    size = config.input_size or dataset.images.shape[-1]
    data = TrainData(
        dataset.images[split.train], dataset.labels[split.train], dataset.images[split.val],
        dataset.labels[split.val], dataset.class_names,
        teacher.logits if (teacher is not None and config.kd != "none") else None, dataset.negative_classes,
    )
    result = train(model, data, config, on_epoch)
    test = evaluate(model, dataset.images[split.test], dataset.labels[split.test], dataset.class_names,
                    input_size=size, negative_classes=dataset.negative_classes)
    summary = {
        "test_accuracy": test.accuracy, "val_accuracy": result.val_accuracy,
        "netscore_definition": NETSCORE.describe(), "input_size": size, "epochs_run": len(result.history),
        "planned_epochs": result.planned_epochs, "stop_reason": result.stop_reason,
        "best_epoch": result.best_epoch, "train_seconds": result.seconds,
        "train_images_per_second": result.images_per_second, "precision": result.precision,
        "teacher": teacher.provenance if (teacher is not None and config.kd != "none") else None,
        "kd": config.kd, "seed": config.seed, "test_metrics": test.to_dict(), "history": result.history,
    }
    image_level = image_metrics(model, dataset, split, size)
    if image_level is not None:  # patch datasets (DAGM): the image verdict, as Kim et al. score it
        summary["test_image_metrics"] = image_level.to_dict()
        summary["test_patch_accuracy"] = test.accuracy
        summary["test_accuracy"] = image_level.accuracy
    return summary


def image_metrics(model: torch.nn.Module, dataset: Dataset, split: Split, size: int):
    """For patch datasets (DAGM: 9 overlapping test patches per image), vote per source image:
    majority texture, and defective if any patch is; None for ordinary image datasets."""
    if dataset.groups is None or not dataset.layout.startswith("dagm"):
        return None
    from defect_nas.evaluators.data import dagm_image_labels, dagm_image_predictions
    from defect_nas.evaluators.metrics import compute_metrics
    from defect_nas.evaluators.trainer import predict_logits

    idx = split.test
    preds = predict_logits(model, dataset.images[idx], input_size=size, precision="fp32").argmax(1)
    groups = dataset.groups[idx]
    _, image_preds = dagm_image_predictions(preds, groups)
    _, image_labels = dagm_image_labels(dataset.labels[idx], groups)
    return compute_metrics(image_preds, image_labels, dataset.class_names, dataset.negative_classes or None)


def write_run(
    result: RunResult, results: str | Path, label: str, dataset: Dataset, split: Split, config: dict, seed: int
) -> Path:
    """results/<time>-<label>/: config, environment, split, arch, metrics, history, weights."""
    run = new_run_dir(results, label)
    write_json(run / "config.json", config)
    write_json(run / "environment.json", environment(seed))
    write_json(run / "split.json", split.to_json(dataset))
    (run / "arch.json").write_text(result.spec.to_json() + "\n")
    summary = {k: v for k, v in result.summary.items() if k != "history"}
    write_json(run / "metrics.json", summary)
    with open(run / "history.csv", "w", newline="") as f:
        rows = result.summary["history"]
        if rows:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, run / "weights.safetensors", metadata={"arch": result.spec.to_json(indent=None)})
    result.run_dir = run
    return run
