"""Pareto fronts of sweep results: pure numpy functions, plus a PNG and a self-contained HTML plot.

Every objective is turned to lower-is-better once (`to_minimize`), as in optuna/study/_multi_objective.py.
Points are (n_trials, n_objectives) arrays in the objectives' own units; directions are "max"/"min"
(or Optuna's "maximize"/"minimize").

Non-finite values: a row with NaN or +-inf in any objective is never on the front and dominates nothing. An
infinite loss or accuracy marks a broken trial, not a perfect one, so even -inf in a minimised objective does
not win; +inf in a minimised objective is simply off the front. Duplicates of a non-dominated point are all
non-dominated (neither is strictly better).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["default_reference", "hypervolume_2d", "non_dominated", "pareto_table", "plot_front_html",
           "plot_front_png", "to_minimize"]

_SIGN = {"max": -1.0, "maximize": -1.0, "maximise": -1.0, "min": 1.0, "minimize": 1.0, "minimise": 1.0}
_BLOCK = 1024  # rows compared at once: memory stays O(n * _BLOCK), not O(n^2)


def _signs(directions: Sequence[str]) -> np.ndarray:
    bad = [d for d in directions if str(d).lower() not in _SIGN]
    if bad:
        raise ValueError(f"directions must be 'max' or 'min', got {bad[0]!r}")
    return np.array([_SIGN[str(d).lower()] for d in directions])


def to_minimize(points, directions: Sequence[str]) -> np.ndarray:
    """(n, k) float array where lower is better in every column (maximised columns negated)."""
    pts = np.asarray(points, dtype=float)
    pts = pts.reshape(0, len(directions)) if pts.size == 0 else pts
    if pts.ndim != 2 or pts.shape[1] != len(directions):
        raise ValueError(f"points must be (n_trials, {len(directions)}) for {len(directions)} directions, "
                         f"got shape {pts.shape}")
    return pts * _signs(directions)


def non_dominated(points, directions: Sequence[str]) -> np.ndarray:
    """(n,) bool mask of the Pareto front: rows no other finite row is <= in all and < in one objective."""
    loss = to_minimize(points, directions)
    finite = np.isfinite(loss).all(axis=1)
    f = loss[finite]
    dominated = np.zeros(len(f), dtype=bool)
    for start in range(0, len(f), _BLOCK):
        block = f[start:start + _BLOCK]  # block[i] is dominated by some row j of f
        weakly = (f[:, None, :] <= block[None, :, :]).all(axis=-1)
        strictly = (f[:, None, :] < block[None, :, :]).any(axis=-1)
        dominated[start:start + _BLOCK] = (weakly & strictly).any(axis=0)
    mask = np.zeros(len(loss), dtype=bool)
    mask[np.flatnonzero(finite)[~dominated]] = True
    return mask


def default_reference(directions: Sequence[str], low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """The worst value of each objective for metrics in [low, high] (accuracies, AUC, TPR): low for a maximised
    one, high for a minimised one. E.g. (test_acc max, attack_acc min) -> (0, 1)."""
    return np.where(_signs(directions) < 0, low, high).astype(float)


def hypervolume_2d(points, directions: Sequence[str], reference=None) -> float:
    """Exact area dominated by the points and bounded by `reference` (default: `default_reference`).

    Points that are non-finite or not strictly better than the reference in both objectives add nothing.
    """
    if len(directions) != 2:
        raise ValueError(f"hypervolume_2d needs exactly 2 objectives, got {len(directions)}")
    ref = to_minimize([default_reference(directions) if reference is None else reference], directions)[0]
    if not np.isfinite(ref).all():
        raise ValueError(f"reference must be finite, got {reference}")
    loss = to_minimize(points, directions)
    loss = loss[np.isfinite(loss).all(axis=1) & (loss < ref).all(axis=1)]
    loss = loss[np.lexsort((loss[:, 1], loss[:, 0]))]  # by x, then y: each step can only lower the best y
    best_y = np.minimum.accumulate(np.concatenate([[ref[1]], loss[:, 1]]))
    return float(np.sum((ref[0] - loss[:, 0]) * (best_y[:-1] - best_y[1:])))


def pareto_table(rows: Sequence[Mapping[str, Any]], objectives: Mapping[str, str]) -> list[dict[str, Any]]:
    """Rows (one per trial, holding each objective's value) with `pareto` added: front first, then best first
    by the first objective. A missing or None objective counts as NaN (never on the front)."""
    names = list(objectives)
    values = np.array([[np.nan if r.get(n) is None else float(r[n]) for n in names] for r in rows])
    values = values.reshape(-1, len(names))
    mask = non_dominated(values, list(objectives.values()))
    first = to_minimize(values, list(objectives.values()))[:, 0]
    order = sorted(range(len(rows)), key=lambda i: (not mask[i], np.nan_to_num(first[i], nan=np.inf)))
    return [{**rows[i], "pareto": bool(mask[i])} for i in order]


def _staircase(front: np.ndarray, directions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the front's attainment line (the boundary of what it dominates), in the objectives' units."""
    loss = to_minimize(front, directions)
    loss = loss[non_dominated(loss, ["min", "min"])]
    loss = loss[np.lexsort((loss[:, 1], loss[:, 0]))]
    signs = _signs(directions)
    return np.repeat(loss[:, 0], 2)[1:] * signs[0], np.repeat(loss[:, 1], 2)[:-1] * signs[1]


def _axis_label(name: str, direction: str) -> str:
    return f"{name} ({'higher' if _signs([direction])[0] < 0 else 'lower'} is better)"


def _prepare(points, directions, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(directions) != 2:
        raise ValueError(f"plots take 2 objectives: points (n, 2) and 2 directions, got {pts.shape}, {directions}")
    mask = non_dominated(pts, directions) if mask is None else np.asarray(mask, dtype=bool)
    return pts, mask & np.isfinite(pts).all(axis=1), np.isfinite(pts).all(axis=1)


def plot_front_png(points, directions: Sequence[str], path: str | Path, *, names: Sequence[str] = ("objective 1",
                   "objective 2"), mask=None, labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Scatter of every trial with the front highlighted, joined by its attainment staircase; returns `path`.

    mask: which rows are on the front (default: computed; pass one computed on more objectives to plot two).
    labels: per-row text (e.g. trial ids) written next to front points.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend, safe in worker threads (Agg canvas)

    pts, front, finite = _prepare(points, directions, mask)
    fig = Figure(figsize=(6.4, 4.8), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    other = finite & ~front
    ax.scatter(pts[other, 0], pts[other, 1], s=22, color="0.65", label=f"dominated ({other.sum()})")
    if front.any():
        ax.plot(*_staircase(pts[front], directions), color="C3", lw=1.2, alpha=0.8)
    ax.scatter(pts[front, 0], pts[front, 1], s=40, color="C3", edgecolor="k", zorder=3,
               label=f"Pareto front ({front.sum()})")
    for i in np.flatnonzero(front) if labels is not None else ():
        ax.annotate(str(labels[i]), pts[i], textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(_axis_label(names[0], directions[0]))
    ax.set_ylabel(_axis_label(names[1], directions[1]))
    ax.set_title(title or f"{names[0]} vs {names[1]}" + (f" ({(~finite).sum()} non-finite not shown)"
                                                         if (~finite).any() else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.savefig(path)
    return Path(path)


def _jsonable(obj: Any) -> Any:
    """details may hold pydantic models (a TrialConfig), numpy scalars or paths."""
    return obj.model_dump(mode="json") if hasattr(obj, "model_dump") else getattr(obj, "tolist", lambda: str(obj))()


def _ticks(lo: float, hi: float, n: int = 6) -> np.ndarray:
    rough = (hi - lo) / n
    power = 10 ** np.floor(np.log10(rough))
    step = power * min(m for m in (1, 2, 5, 10) if m * power >= rough)  # 1, 2 or 5 times a power of ten
    return np.arange(np.ceil(lo / step) * step, hi + step * 1e-9, step)


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title><style>
body{{font:14px system-ui,sans-serif;margin:24px;color:#222}} svg text{{font-size:12px}}
circle{{cursor:pointer}} circle.front{{fill:#d62728;stroke:#000}} circle.other{{fill:#aaa}}
circle:hover{{stroke:#1f77b4;stroke-width:3}} #tip{{position:fixed;display:none;background:#fff;border:1px solid #888;
padding:6px 8px;font:12px monospace;white-space:pre;pointer-events:none;box-shadow:2px 2px 6px #0003}}
</style></head><body><h3>{title}</h3><p>{caption}</p><svg width="{w}" height="{h}">{body}</svg><div id="tip"></div>
<script type="application/json" id="data">{data}</script><script>
const data = JSON.parse(document.getElementById("data").textContent), tip = document.getElementById("tip");
document.querySelectorAll("circle").forEach(c => {{
  c.addEventListener("mousemove", e => {{ const d = data[+c.dataset.i];
    tip.textContent = d.label + "\\n" + d.values + (d.details ? "\\n" + JSON.stringify(d.details, null, 2) : "");
    tip.style.display = "block"; tip.style.left = (e.clientX + 14) + "px"; tip.style.top = (e.clientY + 14) + "px"; }});
  c.addEventListener("mouseleave", () => {{ tip.style.display = "none"; }});
}});
</script></body></html>
"""


def plot_front_html(points, directions: Sequence[str], path: str | Path, *, names: Sequence[str] = ("objective 1",
                    "objective 2"), mask=None, labels: Sequence[str] | None = None,
                    details: Sequence[Any] | None = None, title: str | None = None) -> Path:
    """The same plot as one offline HTML file (inline SVG + a few lines of JS, no network): hovering a point
    shows its label (trial id), objective values and `details` (e.g. its config dict, shown as JSON)."""
    pts, front, finite = _prepare(points, directions, mask)
    w, h, left, right, top, bottom = 760, 500, 70, 20, 20, 50
    shown = pts[finite] if finite.any() else np.zeros((1, 2))
    lo, hi = shown.min(axis=0), shown.max(axis=0)
    pad = np.where(hi > lo, (hi - lo) * 0.06, np.maximum(np.abs(hi) * 0.05, 0.05))
    lo, hi = lo - pad, hi + pad
    sx = lambda x: left + (x - lo[0]) / (hi[0] - lo[0]) * (w - left - right)  # noqa: E731 - data -> pixels
    sy = lambda y: h - bottom - (y - lo[1]) / (hi[1] - lo[1]) * (h - top - bottom)  # noqa: E731
    body = [f'<rect x="{left}" y="{top}" width="{w - left - right}" height="{h - top - bottom}" '
            'fill="none" stroke="#444"/>']
    for t in _ticks(lo[0], hi[0]):
        body.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top}" y2="{h - bottom}" stroke="#eee"/>'
                    f'<text x="{sx(t):.1f}" y="{h - bottom + 16}" text-anchor="middle">{t:.4g}</text>')
    for t in _ticks(lo[1], hi[1]):
        body.append(f'<line x1="{left}" x2="{w - right}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>'
                    f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:.4g}</text>')
    body.append(f'<text x="{(left + w - right) / 2}" y="{h - 10}" text-anchor="middle">'
                f'{html.escape(_axis_label(names[0], directions[0]))}</text>'
                f'<text transform="translate(16 {(top + h - bottom) / 2}) rotate(-90)" text-anchor="middle">'
                f'{html.escape(_axis_label(names[1], directions[1]))}</text>')
    if front.any():
        xs, ys = _staircase(pts[front], directions)
        body.append('<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="'
                    + " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys)) + '"/>')
    rows = []
    for i in np.flatnonzero(finite)[np.argsort(front[finite], kind="stable")]:  # front drawn last, on top
        label = str(labels[i]) if labels is not None else f"#{i}"
        values = f"{names[0]}={pts[i, 0]:.4g}  {names[1]}={pts[i, 1]:.4g}" + ("  (Pareto)" if front[i] else "")
        rows.append({"label": label, "values": values, "details": details[i] if details is not None else None})
        body.append(f'<circle cx="{sx(pts[i, 0]):.1f}" cy="{sy(pts[i, 1]):.1f}" r="{6 if front[i] else 4.5}" '
                    f'class="{"front" if front[i] else "other"}" data-i="{len(rows) - 1}">'
                    f"<title>{html.escape(label)}</title></circle>")
    caption = (f"{len(pts)} trials, {front.sum()} on the Pareto front (red, joined by its staircase)"
               + (f"; {(~finite).sum()} with non-finite objectives not shown" if (~finite).any() else "")
               + ". Hover a point for its configuration.")
    data = json.dumps(rows, default=_jsonable).replace("</", "<\\/")  # keep `</script>` in a value harmless
    page = _PAGE.format(title=html.escape(title or f"{names[0]} vs {names[1]}"), caption=html.escape(caption),
                        w=w, h=h, body="".join(body), data=data)
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)
