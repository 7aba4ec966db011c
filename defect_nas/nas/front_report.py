"""report.html of a ``--target-accuracy`` run: the converged front against MACs and against ONNX
Runtime latency (mean and spread of the seeds' test accuracy), the target drawn, the chosen point marked."""

from __future__ import annotations

import html
from pathlib import Path

from defect_nas.nas.operating_report import operating_section
from defect_nas.nas.report import plt, svg_of


def _front_plot(points: list[dict], x: str, xlabel: str, target: float) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    done = [p for p in points if p["test_accuracy_mean"] is not None and p[x] is not None]
    for p in done:
        low = p["test_accuracy_mean"] - p["test_accuracy_min"]
        ax.errorbar([p[x]], [p["test_accuracy_mean"]], yerr=[[low], [0]], fmt="o",
                    color="tab:red" if p["chosen"] else "tab:blue", capsize=3)
        ax.annotate(p["run"].split("/")[-1], (p[x], p["test_accuracy_mean"]), fontsize=7,
                    textcoords="offset points", xytext=(4, 4))
    ax.axhline(target, color="tab:green", linestyle="--", linewidth=1, label=f"target {target:g}% (validation)")
    ax.plot([], [], "o", color="tab:red", label="chosen")
    ax.plot([], [], "o", color="tab:blue", label="converged point (test mean, bar to the worst seed)")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7)
    return svg_of(fig)


def write_front_report(path: Path, result: dict) -> Path:
    points, target = result["front"], result["target_accuracy"]
    cols = ("run", "macs", "params", "latency_onnx_ms", "val_accuracy_mean", "test_accuracy_mean",
            "test_accuracy_min", "seeds", "reached", "chosen")

    def cell(v) -> str:
        return f"{v:.2f}" if isinstance(v, float) else html.escape(str(v))

    rows = "".join("<tr>" + "".join(f"<td>{cell(p[c])}</td>" for c in cols) + "</tr>" for p in points)
    w = result.get("winner") or {}
    head = (f"chosen: {html.escape(str(w.get('run')))} ({w.get('macs')} MACs), cost = {result['cost']}"
            if w else "no converged point")
    warn = f"<p><b>WARNING:</b> {html.escape(result['warning'])}</p>" if result.get("warning") else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(result['run'])}</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:auto}}td,th{{padding:2px 8px;text-align:right}}</style>
</head><body><h1>{html.escape(result['run'])}: target {target:g}%</h1>
<p>{head}; stopped: {html.escape(result['stopped'])}</p>
{warn}<h2>Converged front</h2>
{_front_plot(points, "macs", "MACs (fvcore)", target)}
{_front_plot(points, "latency_onnx_ms", "latency, batch 1 (ms, ONNX Runtime, 1 thread)", target)}
<table><tr>{''.join(f'<th>{c}</th>' for c in cols)}</tr>{rows}</table>
<p>Each point is the converged winner of one budget's search (its own report: budgets/&lt;N&gt;m/report.html).</p>
{''.join(operating_section(path.parent / "winner"))}
</body></html>"""
    path.write_text(page)
    return path
