"""report.html of a segmentation search: the winner's IoU per class over its seeds, the trials' validation
mIoU against MACs, and overlays of the best and the worst test images (truth beside prediction), so a
reader sees what the numbers mean on the parts."""

from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from defect_nas.core.files import write_text_atomic  # noqa: E402
from defect_nas.core.runfolder import RunFolder  # noqa: E402
from defect_nas.deploy.overlay import overlay  # noqa: E402
from defect_nas.evaluators.segment import predict_masks  # noqa: E402
from defect_nas.nas.report import HEAD, html_table, svg_of  # noqa: E402
from defect_nas.nas.seg_search import SegSearch  # noqa: E402

SHOWN = 4  # images in each of the best and worst rows


def image_ious(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per image: the mean IoU over the classes in its true or predicted mask (percent)."""
    out = np.empty(len(pred))
    for i, (p, t) in enumerate(zip(pred, truth)):
        classes = np.union1d(np.unique(p), np.unique(t))
        out[i] = 100 * np.mean([((p == c) & (t == c)).sum() / ((p == c) | (t == c)).sum() for c in classes])
    return out


def _jpeg(im) -> str:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def overlays_section(run: SegSearch, model: torch.nn.Module) -> str:
    """The best and worst test images by their own mIoU: image with the true mask, and with the predicted one."""
    x, m = run.at(run.task.input_size)
    test = run.split.test
    pred = predict_masks(model, x[test], run.runtime)
    truth = m[test].numpy()
    ious = image_ious(pred, truth)
    order = np.argsort(ious, kind="stable")
    parts = []
    for title, idx in (("Best test images", order[::-1][:SHOWN]), ("Worst test images", order[:SHOWN])):
        cells = []
        for j in idx:
            image = x[test[j]].numpy()
            cells.append("<figure style='display:inline-block;margin:4px'>"
                         f"<img src='{_jpeg(overlay(image, truth[j]))}'>"
                         f"<img src='{_jpeg(overlay(image, pred[j]))}'><figcaption>"
                         f"{html.escape(run.ds.paths[int(test[j])])}: IoU {ious[j]:.1f}% (left truth, right "
                         "prediction)</figcaption></figure>")
        parts += [f"<h3>{title}</h3>", "".join(cells)]
    names = ", ".join(f"{n}" for n in run.ds.class_names[1:])
    return (f"<h2>Overlays</h2><p>The exported seed on the test split, ranked by each image's mIoU over the classes "
            f"in its true or predicted mask. Tints: {html.escape(names)} (deploy/overlay.PALETTE order).</p>"
            + "".join(parts))


def _scatter(rows: list[dict]) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for state, style in (("PRUNED", (".", "0.6")), ("COMPLETE", ("o", "tab:blue"))):
        pts = [(r["macs"] / 1e6, r["val_miou"]) for r in rows if r["state"] == state and r.get("val_miou") is not None]
        if pts:
            ax.scatter(*zip(*pts), marker=style[0], c=style[1], label=state.lower())
    ax.set_xlabel("MACs (millions)")
    ax.set_ylabel("validation mIoU % (proxy size; pruned: last epoch)")
    ax.legend()
    return svg_of(fig)


def write_seg_report(run: SegSearch, summary: dict, rows: list[dict], seeds: list[dict], exported: torch.nn.Module):
    """RUN/report.html (self-contained: inline SVG and JPEG); ``seeds``: each final seed's record (winner/
    metrics.json's ``seeds``), ``exported``: the winner's model (its overlays)."""
    w = summary["winner"]
    over = w["test_miou_over_seeds"]
    names = run.ds.class_names
    per_class = [{"class": n, "mean over seeds": w["test_iou_over_seeds"][n],
                  **{f"seed {s['seed']}": s["test"]["iou"][n] for s in seeds}} for n in names]
    cols = [("class", "class"), ("mean over seeds", "mean test IoU %")] + [
        (f"seed {s['seed']}", f"seed {s['seed']}") for s in seeds]
    seed_rows = [{k: s[k] for k in ("seed", "val_miou", "test_miou", "test_image_defect_accuracy", "epochs_run",
                                    "best_epoch", "train_seconds")} for s in seeds]
    cfg = summary["config"]
    parts = [
        HEAD, f"<h1>defect-nas segmentation search: {html.escape(run.run_dir.name)}</h1>",
        f"<p>{html.escape(cfg['dataset'])}, budget {cfg['budget_flops'] / 1e6:g}M MACs +-{cfg['tolerance']:.0%}, "
        f"spaces {html.escape(', '.join(cfg['spaces']))}; trials: {summary['trials']['finished']} finished, "
        f"{summary['trials']['complete']} complete. The search and rung 2 choose on validation mIoU (background "
        "included) through NetScore; test is reported, never used to choose.</p>",
        f"<h2>Winner</h2><p>{html.escape(str(w['arch']))}: {w['macs'] / 1e6:.1f}M MACs, {w['params']:,} parameters, "
        f"test mIoU <b>{over['mean']:.2f} +- {over['std']:.2f}%</b> over {len(seeds)} seed(s) (min {over['min']:.2f}%) "
        f"at {w['input_size']} px; exported seed {w['exported_seed']} (best validation mIoU): test mIoU "
        f"{w['test_miou']:.2f}%, image-level defect accuracy {w['test_image_defect_accuracy']:.2f}%; "
        f"ONNX Runtime batch 1, 1 thread: {w['latency_onnx_b1_1thread_ms']:.2f} ms.</p>",
        "<h3>IoU per class (test)</h3>", html_table(per_class, cols),
        "<h3>Seeds</h3>", html_table(seed_rows, [(k, k) for k in seed_rows[0]]),
        "<h3>Rung 2 (full size, one seed)</h3>",
        html_table(summary["rung2"], [("trial", "trial"), ("macs", "MACs"), ("params", "params"),
                                      ("val_accuracy", "val mIoU %"), ("test_miou", "test mIoU %"),
                                      ("epochs_run", "epochs")]),
        "<h2>Trials</h2>", _scatter(rows),
        overlays_section(run, exported),
        "</body></html>",
    ]
    return write_text_atomic(RunFolder(run.run_dir).report, "".join(parts))
