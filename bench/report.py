"""Turning measured figures into the comparison table (pure functions, no I/O)."""

from __future__ import annotations

import operator
from dataclasses import dataclass

from workloads import METRIC_BY_KEY, Metric

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


@dataclass
class Cell:
    """One system's outcome for one metric: a value, or why there is none."""

    value: float | None = None
    text: str | None = None  # shown instead of a value: "n/a (not implemented)", "timeout", ...


@dataclass
class Row:
    metric: Metric
    ember: Cell
    ray: Cell
    ratio: float | None
    target: str
    status: str  # "ok" | "MISSED" | "-"
    basis: str = ""  # "ref" when a relative target used the Ray figure


def fmt_value(v: float, unit: str) -> str:
    if unit == "us":
        return f"{v:,.0f} us" if v >= 10 else f"{v:.1f} us"
    if unit == "ms":
        return f"{v:,.0f} ms" if v >= 100 else f"{v:.1f} ms" if v >= 1 else f"{v:.3f} ms"
    if unit == "s":
        return f"{v:.1f} s" if v >= 10 else f"{v:.3f} s"
    if unit == "/s":
        return f"{v:,.0f}/s"
    if unit == "GB/s":
        return f"{v:.2f} GB/s"
    if unit == "MiB":
        return f"{v:,.0f} MiB"
    if unit == "%":
        return f"{v:.1f}%"
    return f"{v:.2f}"


def fmt_cell(cell: Cell, unit: str) -> str:
    if cell.value is not None:
        return fmt_value(cell.value, unit)
    return cell.text or "-"


def evaluate(metric: Metric, ember: float | None, ray: float | None) -> tuple[str, str, str]:
    """(target text, status, basis) for ember's figure against the metric's target."""
    t = metric.target
    if t is None:
        return "-", "-", ""
    if ember is None:
        return t.text, "-", ""
    if t.kind == "abs":
        return t.text, ("ok" if _OPS[t.op](ember, t.value) else "MISSED"), ""
    base, basis = (ray, "") if ray is not None else (metric.ray_ref, "ref")
    if base is None:
        return t.text, "-", ""
    ok = _OPS[t.op](ember, t.value * base)
    return t.text + (" (ref)" if basis else ""), ("ok" if ok else "MISSED"), basis


def build_rows(keys: list[str], cells: dict[str, dict[str, Cell]]) -> list[Row]:
    """``cells[system][metric_key]`` -> one Row per metric key, in order."""
    rows = []
    for key in keys:
        m = METRIC_BY_KEY[key]
        e = cells.get("ember", {}).get(key, Cell(text="-"))
        r = cells.get("ray", {}).get(key, Cell(text="-"))
        ratio = (e.value / r.value) if e.value is not None and r.value else None
        target, status, basis = evaluate(m, e.value, r.value)
        rows.append(Row(m, e, r, ratio, target, status, basis))
    return rows


HEADERS = ("workload", "ember", "Ray", "ember/Ray", "target", "result", "Ray 2.60 ref")


def render_table(groups: list[tuple[str, list[Row]]]) -> str:
    """A plain-text table, one section per group."""
    body: list[tuple[str, ...] | str] = []
    for title, rows in groups:
        body.append(title)
        for row in rows:
            m = row.metric
            body.append((
                f"{m.label}",
                fmt_cell(row.ember, m.unit),
                fmt_cell(row.ray, m.unit),
                f"{row.ratio:.2f}x" if row.ratio is not None else "-",
                row.target,
                row.status,
                fmt_value(m.ray_ref, m.unit) if m.ray_ref is not None else "-",
            ))
    widths = [len(h) for h in HEADERS]
    for line in body:
        if isinstance(line, tuple):
            widths = [max(w, len(c)) for w, c in zip(widths, line, strict=True)]

    def fmt(cols: tuple[str, ...]) -> str:
        first = cols[0].ljust(widths[0])
        rest = [c.rjust(w) if i < 3 else c.ljust(w)
                for i, (c, w) in enumerate(zip(cols[1:], widths[1:], strict=True))]
        return "  ".join([first, *rest]).rstrip()

    total = sum(widths) + 2 * (len(widths) - 1)
    out = [fmt(HEADERS), "-" * total]
    for line in body:
        out.append(f"[{line}]" if isinstance(line, str) else fmt(line))
    return "\n".join(out)


def summary(rows: list[Row]) -> str:
    judged = [r for r in rows if r.status in ("ok", "MISSED")]
    missed = [r for r in judged if r.status == "MISSED"]
    untested = [r for r in rows if r.metric.target is not None and r.status == "-"]
    parts = [f"targets met: {len(judged) - len(missed)} of {len(judged)} measured"]
    if untested:
        parts.append(f"{len(untested)} not measured")
    text = "; ".join(parts)
    if missed:
        text += "\nMISSED: " + "; ".join(
            f"{r.metric.label} ({fmt_cell(r.ember, r.metric.unit)}, target {r.target})"
            for r in missed)
    return text
