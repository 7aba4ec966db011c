"""The report's operating-point section: the ROC curve of the OK/NG decision on the test split with
the stored threshold marked, and its escape and false-reject rates with their intervals."""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve

from defect_nas.deploy.decision import FILE, GOOD_VS_DEFECT
from defect_nas.deploy.operating_point import format_rate


def _roc(op: dict) -> str:
    from defect_nas.nas.report import svg_of

    sign = -1.0 if op["mode"] == GOOD_VS_DEFECT else 1.0  # higher = defect, as the threshold is chosen
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    lowest = 100.0
    for key, s in (op["report"].get("test_scores") or {}).items():
        y = np.r_[np.ones(len(s["defect"])), np.zeros(len(s["pass"]))]
        fpr, tpr, _ = roc_curve(y, sign * np.r_[s["defect"], s["pass"]])
        r = op["report"]["test"][key]
        line, = ax.step(100 * fpr, 100 * tpr, where="post", lw=1.2, label=f"P({key})")
        ax.plot([r["false_reject_rate"] or 0.0], [100 - (r["escape_rate"] or 0.0)], "o", color=line.get_color(),
                ms=7, mfc="none", mew=2)
        lowest = min(lowest, 100 - (r["escape_rate"] or 0.0))
    ax.set_xlabel("false-reject rate, % (parts sent to manual check)")
    ax.set_ylabel("defects caught, % (100 - escape rate)")
    ax.set_title("ROC on the test split; circles: the stored thresholds", fontsize=9)
    ax.set_xscale("symlog", linthresh=1)  # a good model lives in the first percent: stretch it
    ax.set_xlim(0, 100)
    ax.set_ylim(max(0.0, min(lowest, 90.0) - 5), 100.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return svg_of(fig)


def operating_section(model_dir: Path) -> list[str]:
    """HTML for the model folder's operating point ([] when it has none)."""
    path = Path(model_dir) / FILE
    if not path.is_file():
        return []
    op = json.loads(path.read_text())
    test = op["report"].get("test") or {}
    rows = []
    for key, r in test.items():
        rows.append(f"<tr><td>P({html.escape(key)})</td><td>{r['threshold']:.4g}</td>"
                    f"<td>{format_rate(r, 'escape')}</td>"
                    f"<td>{format_rate(r, 'false_reject')}</td></tr>")
    what = ("a part is OK when P(good) is above the threshold" if op["mode"] == GOOD_VS_DEFECT else
            "no defect-free class: each class is flagged when its probability reaches its threshold, one-vs-rest")
    return ["<h2>Operating point: the OK/NG decision (test split)</h2>",
            f"<p>Chosen on validation for an escape rate of at most {100 * op['max_escape_rate']:g}%; {what}. "
            "Intervals: 95% Wilson. <code>defect-nas operating-point RUN --max-escape-rate R</code> chooses "
            "another.</p>",
            "<div class='plots'><div><table><tr><th>threshold on</th><th>threshold</th><th>escape rate</th>"
            f"<th>false-reject rate</th></tr>{''.join(rows)}</table></div><div>{_roc(op)}</div></div>"]
