"""Train one architecture end to end and write its run folder (what ``defect-nas train`` does).

Kept apart from the CLI so the search engine and benchmarks call the same code path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from defect_nas.core.cost import cost
from defect_nas.core.files import write_csv, write_json, write_text_atomic
from defect_nas.core.netscore import DEFAULT as NETSCORE
from defect_nas.core.netscore import measured_netscore
from defect_nas.core.runfolder import RunFolder
from defect_nas.core.spec import ArchSpec
from defect_nas.data import Dataset, Split
from defect_nas.evaluators.runtime import Runtime
from defect_nas.evaluators.scoring import score_test, train_data
from defect_nas.evaluators.teacher import Teacher
from defect_nas.evaluators.trainer import TrainConfig, train
from defect_nas.measure.latency import measure_latency
from defect_nas.measure.runinfo import environment, new_run_dir
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
    runtime: Runtime | None = None,
) -> RunResult:
    """Build, train (distilling from ``teacher`` if given and config.kd != none), and measure."""
    size = config.input_size or dataset.images.shape[-1]
    spec = spec.at_size(size)
    torch.manual_seed(config.seed)  # the seed fixes the initial weights too
    model = build(spec)
    c = cost(spec)
    summary = train_module(model, dataset, split, config, teacher, on_epoch, runtime)
    summary.update({"arch": spec.name, "spec_digest": spec.digest(), "macs": c.macs, "params": c.params,
                    "netscore": measured_netscore(summary["test_accuracy"], c.params, c.macs)})
    if latency:
        shape = (spec.in_channels, size, size)
        eager = measure_latency(model, shape, backend="eager", batch_size_throughput=32, repeats=20)
        summary["latency_ms"] = eager.latency_ms
        summary["throughput_img_s"] = eager.throughput_img_s
        summary["latency"] = eager.to_dict()
    return RunResult(spec, model, summary, None)


def train_module(
    model: torch.nn.Module, dataset: Dataset, split: Split, config: TrainConfig, teacher: Teacher | None = None,
    on_epoch: Callable[[int, float, dict], None] | None = None, runtime: Runtime | None = None,
) -> dict:
    """Train any module on the split and score it on the test part: the one path that candidates,
    finalists and baselines share, so their numbers mean the same thing (image-level on DAGM)."""
    size = config.input_size or dataset.images.shape[-1]
    uses_teacher = teacher is not None and config.kd != "none"
    data = train_data(dataset, split, teacher.logits if uses_teacher else None)
    result = train(model, data, config, on_epoch, runtime)
    _, test = score_test(model, dataset, split, size)  # on the training device, batched
    model.cpu()  # what follows (weights, export, CPU latency) works on the CPU copy
    if runtime is not None:
        runtime.release()
    summary = {
        **test, "val_accuracy": result.val_accuracy,
        "netscore_definition": NETSCORE.describe(), "input_size": size, "epochs_run": len(result.history),
        "planned_epochs": result.planned_epochs, "stop_reason": result.stop_reason,
        "best_epoch": result.best_epoch, "train_seconds": result.seconds,
        "train_images_per_second": result.images_per_second, "precision": result.precision,
        "teacher": teacher.provenance if uses_teacher else None,
        "kd": config.kd, "seed": config.seed, "history": result.history,
    }
    return summary


def write_run(
    result: RunResult, results: str | Path, label: str, dataset: Dataset, split: Split, config: dict, seed: int
) -> Path:
    """results/<time>-<label>/: config, environment, split, arch, metrics, history, weights."""
    run = new_run_dir(results, label)
    folder = RunFolder(run)
    write_json(folder.config, config)
    write_json(folder.environment, environment(seed))
    write_json(folder.split, split.to_json(dataset))
    write_text_atomic(run / "arch.json", result.spec.to_json() + "\n")
    summary = {k: v for k, v in result.summary.items() if k != "history"}
    write_json(run / "metrics.json", summary)
    write_csv(run / "history.csv", result.summary["history"])
    state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, run / "weights.safetensors", metadata={"arch": result.spec.to_json(indent=None)})
    result.run_dir = run
    return run
