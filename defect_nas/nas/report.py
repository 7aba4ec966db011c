"""report.html: one self-contained page (inline SVG plots, no scripts, opens offline)."""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from defect_nas.core.pareto import pareto_front  # noqa: E402
from defect_nas.nas.operating_report import operating_section  # noqa: E402

PARAMS_LABEL = "parameters (MACs are pinned inside the budget band)"
LATENCY_LABEL = "latency, batch 1 (ms, ONNX Runtime; timed after the search, apart from training)"
SEARCH_LATENCY_LABEL = "latency, batch 1 (ms; timed during the search beside training trials: a screen)"


HEAD = ("<!doctype html><html><head><meta charset='utf-8'><title>defect-nas report</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}table{border-collapse:collapse;"
        "margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
        ".plots{display:flex;flex-wrap:wrap;gap:1em}.plots>div{flex:1 1 480px}svg{max-width:100%;height:auto}"
        "</style></head><body>")


def svg_of(fig) -> str:
    """The figure as inline SVG, byte-identical for the same data (no date, fixed element ids), so a
    rebuilt report can be compared with the committed one."""
    buf = io.StringIO()
    with plt.rc_context({"svg.hashsalt": "defect-nas"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _latency_scatter(rows: list[dict], winner: dict | None) -> str:
    """The accuracy-vs-latency front on the quiet measurements; a run made before they existed
    shows its in-search screen, labelled as such."""
    if any(r.get("latency_ms") is not None for r in rows):
        return _scatter(rows, "latency_ms", LATENCY_LABEL, winner)
    return _scatter(rows, "latency_search_ms", SEARCH_LATENCY_LABEL, winner)


def _scatter(rows: list[dict], x: str, xlabel: str, winner: dict | None, log: bool = False,
             baselines: list[dict] = ()) -> str:
    """Validation accuracy against ``x``: trials by state (pruned ones faint), the Pareto front of the
    complete feasible ones, the space's prototypes and the baselines labelled, the winner starred."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    groups = {  # drawn in this order: pruned trials faint and behind the completed ones
        "pruned": [r for r in rows if r["state"] == "PRUNED"],
        "infeasible (budget, cap or accuracy floor)": [r for r in rows if not r["feasible"]],
        "complete, feasible": [r for r in rows if r["state"] == "COMPLETE" and r["feasible"]],
    }
    styles = {"complete, feasible": ("o", "tab:blue"), "infeasible (budget, cap or accuracy floor)": ("x", "tab:red"),
              "pruned": (".", "0.6")}
    for name, rs in groups.items():
        pts = [(r[x], r["val_accuracy"]) for r in rs if r.get(x) is not None and r.get("val_accuracy") is not None]
        if pts:
            ax.scatter(*zip(*pts), marker=styles[name][0], c=styles[name][1], label=name,
                       alpha=0.35 if name == "pruned" else 0.85)
    front = pareto_front(groups["complete, feasible"], minimize=(x,))
    if front:
        ax.plot([r[x] for r in front], [r["val_accuracy"] for r in front], "-", c="tab:green", label="Pareto front")
    for r in rows:  # the seeds of generative synthesis, by name
        if r.get("prototype") and r.get(x) is not None and r.get("val_accuracy") is not None:
            ax.annotate(str(r["prototype"]).split("/")[-1], (r[x], r["val_accuracy"]), fontsize=7,
                        xytext=(4, -10), textcoords="offset points", color="0.3")
    shown = [b for b in baselines if b.get(x) is not None and b.get("val_accuracy") is not None]
    if shown:
        ax.scatter([b[x] for b in shown], [b["val_accuracy"] for b in shown], marker="D", c="tab:purple",
                   label="baselines (final recipe, 1 seed)")
        for b in shown:
            ax.annotate(b["name"], (b[x], b["val_accuracy"]), fontsize=7, xytext=(4, 4), textcoords="offset points",
                        color="tab:purple")
    if winner and winner.get(x) is not None:
        ax.scatter([winner[x]], [winner["val_accuracy"]], marker="*", s=250, c="gold", edgecolors="k", label="winner")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation accuracy (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return svg_of(fig)


def _progress(rows: list[dict], objective: str = "netscore") -> str:
    """The search's objective (the sampler's, ``utility``; NetScore in runs made before it existed)
    trial by trial, and the best so far."""
    key = "utility" if any(r.get("utility") is not None for r in rows) else "netscore"
    done = sorted((r for r in rows if r.get(key) is not None and r["state"] == "COMPLETE" and r["feasible"]),
                  key=lambda r: r["number"])
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    if done:
        ax.scatter([r["number"] for r in done], [r[key] for r in done], s=12, label=f"trial {objective} (val)")
        best, cur = [], float("-inf")
        for r in done:
            cur = max(cur, r[key])
            best.append(cur)
        ax.step([r["number"] for r in done], best, where="post", c="tab:orange", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return svg_of(fig)


def _confusion(matrix: list[list[int]], names: list[str]) -> str:
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            dark = v > 0.5 * max(max(r) for r in matrix)  # white on the dark cells, black on the light ones
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return svg_of(fig)


def _curves(path: Path) -> str | None:
    """Validation accuracy per epoch of every rung-2 candidate and final seed (learning_curves.csv)."""
    import csv

    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, phase, title in (
        (axes[0], "rung2", "rung 2 (1 seed each)"),
        (axes[1], "final", "final: the winner's seeds"),
    ):
        keys = sorted({(r["trial"], r["seed"]) for r in rows if r["phase"] == phase})
        for trial, seed in keys:
            pts = [(int(r["epoch"]), float(r["val_accuracy"])) for r in rows
                   if r["phase"] == phase and r["trial"] == trial and r["seed"] == seed]
            ax.plot(*zip(*pts), label=f"trial {trial}" if phase == "rung2" else f"seed {seed}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if keys:
            ax.legend(fontsize=8)
    axes[0].set_ylabel("validation accuracy (%)")
    return svg_of(fig)


def _counts(counts: dict[str, int]) -> str:
    """'43 complete, 136 pruned' rather than a Python dict."""
    return ", ".join(f"{n} {state.lower()}" for state, n in counts.items()) or "none"


def html_table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in cols)
    body = []
    for r in rows:
        cells = []
        for key, _ in cols:
            v = r.get(key)
            if isinstance(v, float):
                v = f"{v:,.2f}"
            elif isinstance(v, int):
                v = f"{v:,}"
            cells.append(f"<td>{html.escape('' if v is None else str(v))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def write_report(path: Path, summary: dict, rows: list[dict]) -> Path:
    """Write report.html from the search summary and every trial row."""
    winner = summary.get("winner") or {}
    acc_name = "balanced acc" if winner.get("metric") == "balanced_accuracy" else "acc"
    wrow = next((r for r in rows if r["number"] == winner.get("trial")), None)
    objective = str(summary.get("objective") or "netscore").split(":")[0]
    parts = [
        HEAD,
        f"<h1>defect-nas search: {html.escape(summary.get('run', ''))}</h1>",
        f"<p>{html.escape(summary.get('description', ''))}</p>",
        f"<p>Trials: {html.escape(_counts(summary.get('trial_counts', {})))}. "
        f"{html.escape(summary.get('netscore_definition', ''))}. "
        + (f"Objective: {html.escape(summary['objective'])}. " if "objective" in summary else "")
        + "Selection uses validation accuracy only; "
        "test accuracy is reported, never used to choose.</p>",
    ]
    parts += [f"<p><b>Note:</b> {html.escape(n)}</p>" for n in summary.get("notes", [])]
    parts.append("<h2>Winner</h2>")
    if winner.get("metric") == "balanced_accuracy":
        parts.append("<p>The classes are imbalanced: every accuracy on this page is <b>balanced accuracy</b> "
                     "(the mean of the per-class recalls), which candidates were also chosen on.</p>")
    explained = path.parent / "explain" / "deletion.json"
    if explained.is_file():  # written by `defect-nas explain RUN`
        d = json.loads(explained.read_text())
        auc = d["deletion_auc"]
        parts.append(f"<p>Explanations ({html.escape(d['method'])}): <a href='explain/explain.html'>maps of one "
                     "correct image and every error per class</a>; deletion test over the test split, area under "
                     f"the class-probability curve {auc['attribution']:.3f} removing the most-attributed pixels "
                     f"first vs {auc['random']:.3f} in random order (lower: the map found the evidence).</p>")
    if winner.get("fidelity"):
        parts.append(f"<p>Trained: {html.escape(winner['fidelity'])}.</p>")
    if winner:
        parts.append(
            html_table(
                [winner],
                [
                    ("name", "winner"),
                    ("test_accuracy_mean", f"test {acc_name} % (mean)"),
                    ("test_accuracy_std", "+- std"),
                    ("val_accuracy_mean", "val acc %"),
                    ("macs", "MACs"),
                    ("params", "params"),
                    ("netscore", "NetScore (test)"),
                    ("latency_ms", "latency ms (eager)"),
                    ("latency_onnx_ms", "latency ms (ONNX RT)"),
                    ("seeds", "seeds"),
                ],
            )
        )
    if (winner.get("final") or {}).get("seeds"):
        parts += ["<h3>Final seeds</h3>",
                  html_table(winner["final"]["seeds"], [("seed", "seed"), ("val_accuracy", "val acc %"),
                                                   ("test_accuracy", "test acc %"), ("epochs_run", "epochs run"),
                                                   ("planned_epochs", "planned"), ("best_epoch", "best epoch"),
                                                   ("stop_reason", "stopped by"), ("train_seconds", "seconds"),
                                                   ("train_images_per_second", "img/s")])]
    timeline = summary.get("timeline") or {}
    phases = [("setup_s", "data and teacher"), ("explore_s", "exploration"), ("promote_s", "rung 2"),
              ("final_s", "final seeds"), ("baselines_s", "baselines"), ("export_s", "export and report")]
    if timeline.get("wall_s"):
        row = {label: f"{timeline[k] / 60:.1f} min" for k, label in phases if timeline.get(k) is not None}
        budget = timeline.get("budget_s")
        row["whole run"] = f"{timeline['wall_s'] / 60:.1f} min" + (f" of {budget / 60:g}" if budget else "")
        plan = ", ".join(f"{k.replace('_end', '')} by {v / 60:.1f} min" for k, v in (timeline.get("plan") or {}).items()
                         if v is not None)
        parts += ["<h3>Where the time went</h3>", html_table([row], [(k, k) for k in row]),
                  f"<p>Planned: {html.escape(plan)}.</p>" if plan else ""]
    curves = _curves(path.parent / "learning_curves.csv")
    if curves:
        parts += ["<h3>Learning curves</h3>", curves]
    if summary.get("comparison"):
        parts += ["<h2>Winner against baselines (same trainer; each row says its fidelity)</h2>",
                  html_table(summary["comparison"], [("name", "model"), ("test_accuracy", "test acc %"),
                                                 ("macs", "MACs"), ("params", "params"),
                                                 ("netscore", "NetScore"), ("latency_ms", "latency ms"),
                                                 ("fidelity", "trained at")])]
    baseline_rows = [c for c in summary.get("comparison") or [] if not str(c.get("name", "")).startswith("winner")]
    parts += [
        "<h2>Pareto fronts</h2><div class='plots'>",
        f"<div>{_scatter(rows, 'params', PARAMS_LABEL, wrow, log=True, baselines=baseline_rows)}</div>",
        f"<div>{_latency_scatter(rows, wrow)}</div></div>",
        f"<h2>{html.escape(objective)} over the search</h2>", _progress(rows, objective),
    ]
    if winner.get("confusion"):
        parts += ["<h2>Winner: confusion matrix and per-class accuracy (test)</h2><div class='plots'>",
                  f"<div>{_confusion(winner['confusion'], list(winner['class_names']))}</div><div>",
                  html_table([{"class": k, "accuracy": v} for k, v in winner.get("per_class_accuracy", {}).items()],
                         [("class", "class"), ("accuracy", "accuracy %")]), "</div></div>"]
    parts += operating_section(path.parent / "winner")
    if summary.get("promotion"):
        parts += ["<h2>Rung 2: the best proxy candidates at full resolution</h2><p>The winner is the best "
                  f"validation {html.escape(objective)} among those "
                  "within the accuracy margin of the best rung-2 validation accuracy.</p>",
                  html_table(summary["promotion"], [("trial", "trial"), ("chosen", "winner"),
                                                ("proxy_val_accuracy", "proxy val %"), ("val_accuracy", "val %"),
                                                ("test_accuracy", "test %"), ("epochs_run", "epochs"),
                                                ("train_images_per_second", "img/s"), ("macs", "MACs"),
                                                ("params", "params"), ("latency_ms", "ms"),
                                                ("val_netscore", "NetScore (val)"),
                                                ("val_utility", "objective (val)")])]
    peak = (summary.get("peak") or {}).get("gflops")
    parts += ["<h2>All trials</h2>",
              "<p>ms: ONNX Runtime batch-1 latency, timed apart from training (the compared designs); GFLOP/s: "
              "2 x MACs / that latency" + (f", next to this machine's measured peak of {peak:g} GFLOP/s "
                                           f"({html.escape(summary['peak']['what'])}, "
                                           f"{summary['peak']['threads']} thread(s))" if peak else "") + ".</p>",
              html_table(rows, [("number", "#"), ("state", "state"), ("space", "space"), ("prototype", "prototype"),
                            ("macs", "MACs"), ("params", "params"), ("val_accuracy", "val %"),
                            ("test_accuracy", "test %"), ("latency_ms", "ms"), ("gflops", "GFLOP/s"),
                            ("fraction_of_peak", "of peak"), ("netscore", "NetScore"), ("utility", "objective"),
                            ("constraint", "constraint"), ("epochs_run", "epochs")]),
              "</body></html>"]
    path.write_text("\n".join(parts))
    return path
