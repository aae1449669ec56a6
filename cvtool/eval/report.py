"""Tables from evaluation reports: the per-class rows (CSV), the text table, the summary lines.

Every report of :mod:`cvtool.eval` turns into ``(headers, rows)`` here; the CLI
prints them and writes them as CSV.  Undefined values (-1 in COCO, NaN
elsewhere) are written as empty CSV cells and ``-`` in the text table.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """Recursively replace NaN/inf by None and NumPy scalars/arrays by Python values."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _undefined(v: Any) -> bool:
    return v is None or (isinstance(v, float) and (not math.isfinite(v)))


def per_class_table(report) -> tuple[list[str], list[list[Any]]]:
    """``(headers, rows)`` of the per-class table of any eval report."""
    from cvtool.eval.coco import CocoReport
    from cvtool.eval.loc import LocReport
    from cvtool.eval.voc import VocReport

    if isinstance(report, CocoReport):
        headers = ["id", "name", "num_gt", "num_dets", "AP", "AP50", "AP75", "AR100"]
        rows = [[r[h] if not (h.startswith("A") and r[h] == -1) else None for h in headers] for r in report.per_class]
        return headers, rows
    if isinstance(report, VocReport):
        headers = ["iou", "id", "name", "num_gt", "num_difficult", "num_dets", "TP", "FP", "recall", "AP"]
        rows = []
        for t in report.iou_thresholds:
            for c in report.per_class[t]:
                d = c.to_dict()
                rows.append([f"{t:g}", d["id"], d["name"], d["num_gt"], d["num_difficult"], d["num_dets"],
                             d["TP"], d["FP"], d["recall"], d["AP"]])
        return headers, rows
    if isinstance(report, LocReport):
        headers = ["id", "name", "num_images", "accuracy", "mean_iou", "iou_hit_rate", "correct"]
        return headers, [[r[h] for h in headers] for r in report.per_class]
    # proposals (cvtool.eval.proposals.ProposalReport): its to_dict() layout
    d = report.to_dict()
    thresholds, counts = d["iou_thresholds"], d["counts"]
    headers = ["name", "num_gt"] + [f"recall@{t:g}@{n}" for t in thresholds for n in counts] + ["abo_all"]
    rows = []
    for name, pc in d["per_class"].items():
        rows.append([name, pc["num_gt"]] + [pc["recall"][f"{t:g}"][str(n)] for t in thresholds for n in counts]
                    + [pc["abo_all"]])
    return headers, rows


def summary_lines(report) -> list[tuple[str, Any]]:
    """``(name, value)`` pairs of the headline numbers of a report."""
    from cvtool.eval.coco import CocoReport
    from cvtool.eval.loc import LocReport
    from cvtool.eval.voc import VocReport

    if isinstance(report, CocoReport):
        return list(report.stats.items())
    if isinstance(report, VocReport):
        return [(f"mAP@{t:g} ({report.method})", report.mean_ap[t]) for t in report.iou_thresholds]
    if isinstance(report, LocReport):
        t = report.iou_threshold
        return [("images", report.num_images), ("without prediction", report.images_without_prediction),
                ("accuracy", report.accuracy), ("mean IoU", report.mean_iou),
                (f"IoU >= {t:g}", report.iou_hit_rate), (f"class right and IoU >= {t:g}", report.correct)]
    d = report.to_dict()
    lines: list[tuple[str, Any]] = [("images", d["num_images"]), ("boxes", d["num_gt"]),
                                    ("mean proposals", d["mean_proposals"])]
    for t, by_n in d["recall"].items():
        lines += [(f"recall@{t} with {n}", r) for n, r in by_n.items()]
    lines += [("ABO (all)", d["abo_all"]), ("MABO", d["mabo"])]
    return lines


def _fmt(v: Any) -> str:
    if _undefined(v) or (isinstance(v, float) and v == -1):
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """Plain aligned text (numbers right-aligned, 4 decimals)."""
    cells = [headers] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) for i in range(len(headers))]
    out = []
    for r in cells:
        out.append("  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)).rstrip())
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def to_csv(headers: list[str], rows: list[list[Any]]) -> str:
    """CSV text; undefined values as empty cells, floats with full precision."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(headers)
    for row in rows:
        w.writerow(["" if _undefined(v) else (repr(float(v)) if isinstance(v, float) else v) for v in row])
    return buf.getvalue()
