"""Pareto plots of two objectives: a PNG (matplotlib, no pyplot) and one self-contained HTML page (inline SVG).

Both colour points by `groups` (the optimizer) with a legend, ring the front and join it by its attainment
staircase, draw error bars where `errors` (standard deviations over seeds) are given, and label each axis with
its objective and direction. The HTML shows a point's label, values and `details` (its configuration) on hover,
and opens `links[i]` (its MLflow run) on click.
"""

from __future__ import annotations

import html
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from samprivacy.catalog import OPTIMIZERS
from samprivacy.report.pareto import axis_label, non_dominated, staircase

__all__ = ["group_colours", "group_markers", "plot_front_html", "plot_front_png"]

# matplotlib's tab10, so the PNG and the HTML agree; optimizers keep their colour across sweeps.
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf")
_KNOWN = {name: _PALETTE[i] for i, name in enumerate(OPTIMIZERS)}
# Beyond tab10's ten: the darker tab20b shades, so a front of every optimizer and every defense repeats no colour.
_MORE = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#5254a3")
# Methods that are no optimizer (defenses) are also told apart by shape in the PNG; optimizers stay round.
_MARKERS = ("s", "^", "D", "v", "P", "X", "*", "<", ">")
_DEFAULT_GROUP = "trials"


def group_colours(groups: Sequence[str]) -> dict[str, str]:
    """A colour per distinct group: an optimizer (also `sam (digits)`) always gets its own, others take turns."""
    spare = itertools.cycle([*(c for c in _PALETTE if c not in _KNOWN.values()), *_MORE])
    rank = {name: i for i, name in enumerate(_KNOWN)}  # legend order: sgd, sam, asam, sharpreg, swa, then others
    ordered = sorted(dict.fromkeys(groups), key=lambda g: rank.get(str(g).split(" ", 1)[0], len(rank)))
    return {g: _KNOWN.get(str(g).split(" ", 1)[0]) or next(spare) for g in ordered}


def group_markers(groups: Sequence[str]) -> dict[str, str]:
    """A marker per distinct group: a circle for an optimizer, a shape of its own for each other method."""
    shapes = itertools.cycle(_MARKERS)
    return {g: "o" if str(g).split(" ", 1)[0] in _KNOWN else next(shapes) for g in group_colours(groups)}



def _prepare(points: npt.ArrayLike, directions: Sequence[str], mask: npt.ArrayLike | None,
             groups: Sequence[str] | None, errors: npt.ArrayLike | None) -> tuple[Any, ...]:
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(directions) != 2:
        raise ValueError(f"plots take 2 objectives: points (n, 2) and 2 directions, got {pts.shape}, {directions}")
    finite = np.isfinite(pts).all(axis=1)
    mask = non_dominated(pts, directions) if mask is None else np.asarray(mask, dtype=bool)
    groups = [_DEFAULT_GROUP] * len(pts) if groups is None else [str(g) for g in groups]
    err = np.full(pts.shape, np.nan) if errors is None else np.asarray(errors, dtype=float).reshape(pts.shape)
    return pts, mask & finite, finite, groups, err


def _title(names: Sequence[str], finite: np.ndarray, title: str | None) -> str:
    return (title or f"{names[0]} vs {names[1]}") + (f" ({(~finite).sum()} non-finite not shown)"
                                                     if (~finite).any() else "")


def plot_front_png(points: npt.ArrayLike, directions: Sequence[str], path: str | Path, *, names: Sequence[str] = ("objective 1",
                   "objective 2"), mask: npt.ArrayLike | None = None, labels: Sequence[str] | None = None,
                   groups: Sequence[str] | None = None, errors: npt.ArrayLike | None = None, title: str | None = None) -> Path:
    """Scatter of every point, coloured by group, the front ringed in black and joined by its staircase.

    mask: which rows are on the front (default: computed; pass one computed on more objectives to plot two).
    labels: per-row text written next to front points. errors: (n, 2) standard deviations (NaN = no bar).
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend, safe in worker threads (Agg canvas)
    from matplotlib.lines import Line2D

    pts, front, finite, groups, err = _prepare(points, directions, mask, groups, errors)
    fig = Figure(figsize=(6.2, 4.5), dpi=100, layout="constrained")  # fits the MLflow description unscaled
    ax = fig.add_subplot()
    if front.any():
        ax.plot(*staircase(pts[front], directions), color="0.25", lw=1.0, ls="--", zorder=1)
    colours = group_colours([g for g, ok in zip(groups, finite) if ok])
    markers = group_markers(list(colours))
    handles = []
    for group, colour in colours.items():
        rows = finite & np.array([g == group for g in groups])
        bars = rows & np.isfinite(err).any(axis=1)
        if bars.any():
            ax.errorbar(pts[bars, 0], pts[bars, 1], xerr=np.nan_to_num(err[bars, 0]),
                        yerr=np.nan_to_num(err[bars, 1]), fmt="none", ecolor=colour, alpha=0.6, lw=1, capsize=2,
                        zorder=2)
        ax.scatter(pts[rows & ~front, 0], pts[rows & ~front, 1], s=28, color=colour, alpha=0.55, zorder=3,
                   marker=markers[group])
        ax.scatter(pts[rows & front, 0], pts[rows & front, 1], s=60, color=colour, edgecolor="k", linewidth=1.4,
                   zorder=4, marker=markers[group])
        handles.append(Line2D([], [], ls="", marker=markers[group], color=colour, label=f"{group} ({rows.sum()})"))
    handles.append(Line2D([], [], ls="--", marker="o", color="0.25", markerfacecolor="white", markeredgecolor="k",
                          label=f"Pareto front ({front.sum()})"))
    if np.isfinite(err[finite]).any():
        handles.append(Line2D([], [], ls="-", color="0.4", label="± 1 std over seeds"))
    for i in np.flatnonzero(front) if labels is not None else ():
        label = labels[int(i)]  # type: ignore[index]  # labels is not None here
        ax.annotate(str(label), pts[i], textcoords="offset points", xytext=(5, 5), fontsize=7)
    ax.set_xlabel(axis_label(names[0], directions[0]))
    ax.set_ylabel(axis_label(names[1], directions[1]))
    ax.set_title(_title(names, finite, title), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, loc="best", fontsize=8)
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
circle{{cursor:pointer;stroke:#fff}} circle.front{{stroke:#000;stroke-width:2}} circle.other{{opacity:.6}}
circle:hover{{stroke:#1f77b4;stroke-width:3}} #tip{{position:fixed;display:none;background:#fff;border:1px solid #888;
padding:6px 8px;font:12px monospace;white-space:pre;pointer-events:none;box-shadow:2px 2px 6px #0003}}
.legend span{{display:inline-block;margin-right:14px}} .dot{{display:inline-block;width:10px;height:10px;
border-radius:50%;margin-right:4px}}
</style></head><body><h3>{title}</h3><p>{caption}</p><p class="legend">{legend}</p>
<svg width="{w}" height="{h}">{body}</svg><div id="tip"></div>
<script type="application/json" id="data">{data}</script><script>
const data = JSON.parse(document.getElementById("data").textContent), tip = document.getElementById("tip");
document.querySelectorAll("circle").forEach(c => {{ const d = data[+c.dataset.i];
  c.addEventListener("mousemove", e => {{
    tip.textContent = d.label + "\\n" + d.values + (d.link ? "\\n(click: open in MLflow)" : "")
      + (d.details ? "\\n" + JSON.stringify(d.details, null, 2) : "");
    tip.style.display = "block"; tip.style.left = (e.clientX + 14) + "px"; tip.style.top = (e.clientY + 14) + "px"; }});
  c.addEventListener("mouseleave", () => {{ tip.style.display = "none"; }});
  if (d.link) c.addEventListener("click", () => {{ window.open(d.link, "_top"); }});
}});
</script></body></html>
"""


def _value(v: float, e: float) -> str:
    return f"{v:.4g}" + (f" ± {e:.2g}" if np.isfinite(e) else "")


def plot_front_html(points: npt.ArrayLike, directions: Sequence[str], path: str | Path, *, names: Sequence[str] = ("objective 1",
                    "objective 2"), mask: npt.ArrayLike | None = None, labels: Sequence[str] | None = None,
                    details: Sequence[Any] | None = None, groups: Sequence[str] | None = None,
                    errors: npt.ArrayLike | None = None,
                    links: Sequence[str | None] | None = None, title: str | None = None) -> Path:
    """The same plot as one offline HTML file (inline SVG + a few lines of JS, nothing loaded from a network):
    hover a point for its label, values (± std) and `details` (its configuration, as JSON); click it to open
    `links[i]` in the top window (MLflow shows artifacts in a frame)."""
    pts, front, finite, groups, err = _prepare(points, directions, mask, groups, errors)
    w, h, left, right, top, bottom = 760, 500, 70, 20, 20, 50
    shown = pts[finite] if finite.any() else np.zeros((1, 2))
    spread = np.nan_to_num(err[finite]) if finite.any() else np.zeros((1, 2))
    lo, hi = (shown - spread).min(axis=0), (shown + spread).max(axis=0)
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
                f'{html.escape(axis_label(names[0], directions[0]))}</text>'
                f'<text transform="translate(16 {(top + h - bottom) / 2}) rotate(-90)" text-anchor="middle">'
                f'{html.escape(axis_label(names[1], directions[1]))}</text>')
    if front.any():
        xs, ys = staircase(pts[front], directions)
        body.append('<polyline fill="none" stroke="#444" stroke-dasharray="5 3" stroke-width="1.2" points="'
                    + " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys)) + '"/>')
    colours = group_colours([g for g, ok in zip(groups, finite) if ok])
    for i in np.flatnonzero(finite & np.isfinite(err).any(axis=1)):
        (x, y), (ex, ey), colour = pts[i], np.nan_to_num(err[i]), colours[groups[int(i)]]
        body.append(f'<path class="errorbar" d="M{sx(x - ex):.1f} {sy(y):.1f}H{sx(x + ex):.1f}'
                    f'M{sx(x):.1f} {sy(y - ey):.1f}V{sy(y + ey):.1f}" stroke="{colour}" opacity=".6"/>')
    rows = []
    for i in np.flatnonzero(finite)[np.argsort(front[finite], kind="stable")]:  # front drawn last, on top
        label = str(labels[i]) if labels is not None else f"#{i}"
        values = (f"{names[0]}={_value(pts[i, 0], err[i, 0])}  {names[1]}={_value(pts[i, 1], err[i, 1])}"
                  + ("  (Pareto)" if front[i] else ""))
        rows.append({"label": label, "values": values, "group": groups[i],
                     "details": details[i] if details is not None else None,
                     "link": links[i] if links is not None else None})
        body.append(f'<circle cx="{sx(pts[i, 0]):.1f}" cy="{sy(pts[i, 1]):.1f}" r="{7 if front[i] else 5}" '
                    f'fill="{colours[groups[i]]}" class="{"front" if front[i] else "other"}" '
                    f'data-i="{len(rows) - 1}"><title>{html.escape(label)}</title></circle>')
    legend = "".join(f'<span><i class="dot" style="background:{c}"></i>{html.escape(g)} '
                     f'({sum(1 for x, ok in zip(groups, finite) if ok and x == g)})</span>'
                     for g, c in colours.items())
    legend += f'<span><i class="dot" style="border:2px solid #000"></i>Pareto front ({front.sum()})</span>'
    caption = (f"{finite.sum()} points, {front.sum()} on the Pareto front (black rings, joined by its staircase)"
               + ("; bars: ± 1 standard deviation over seeds" if np.isfinite(err[finite]).any() else "")
               + (f"; {(~finite).sum()} with non-finite objectives not shown" if (~finite).any() else "")
               + ". Hover a point for its configuration" + ("; click it to open its MLflow run." if links is not None
                                                           else "."))
    data = json.dumps(rows, default=_jsonable).replace("</", "<\\/")  # keep `</script>` in a value harmless
    page = _PAGE.format(title=html.escape(_title(names, finite, title)), caption=html.escape(caption),
                        legend=legend, w=w, h=h, body="".join(body), data=data)
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)
