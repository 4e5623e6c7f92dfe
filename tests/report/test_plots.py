"""Pareto plots: files that exist, colours by optimizer with a legend, the front marked, error bars, links."""

from __future__ import annotations

import json
import math
import re

import numpy as np

from samprivacy.report.plots import group_colours, plot_front_html, plot_front_png
from samprivacy.spec import TrialConfig

MAXMIN = ["max", "min"]
nan = math.nan


def test_plots_write_png_and_offline_html(tmp_path):
    pts = np.array([[0.9, 0.6], [0.8, 0.55], [0.85, 0.7], [nan, 0.5], [0.7, 0.5]])
    labels = [f"trial-{i}" for i in range(len(pts))]
    details = [{"optimizer": "sam", "rho": 0.05, "note": "</script><b>"}] * len(pts)
    png = plot_front_png(pts, MAXMIN, tmp_path / "front.png", names=("test_acc", "attack_acc"), labels=labels)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    page = plot_front_html(pts, MAXMIN, tmp_path / "front.html", names=("test_acc", "attack_acc"), labels=labels,
                           details=details).read_text()
    assert page.count("<circle") == 4 and page.count('class="front"') == 3  # NaN row left out, 3 on the front
    assert "trial-4" in page and "test_acc (higher is better)" in page and "attack_acc (lower is better)" in page
    assert "<polyline" in page and "1 with non-finite objectives not shown" in page
    assert "http" not in page and "<script src" not in page  # nothing loaded from the network
    assert "</script><b>" not in page  # config text cannot break out of the data block


def test_html_details_accept_configs(tmp_path):
    config = TrialConfig(optimizer="sam", rho=0.05)
    page = plot_front_html([[0.9, 0.6]], MAXMIN, tmp_path / "c.html", details=[config]).read_text()
    assert '"optimizer": "sam"' in page and '"rho": 0.05' in page


def test_plots_take_a_mask_from_more_objectives(tmp_path):
    pts = np.array([[0.9, 0.6], [0.9, 0.6], [0.8, 0.7]])
    mask = np.array([True, False, True])  # e.g. decided by a third objective
    page = plot_front_html(pts, MAXMIN, tmp_path / "f.html", mask=mask).read_text()
    assert page.count('class="front"') == 2
    assert plot_front_png(pts, MAXMIN, tmp_path / "f.png", mask=mask).stat().st_size > 0


def _data(page: str) -> list[dict]:
    return json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1))


def test_points_are_coloured_by_optimizer_with_a_legend(tmp_path):
    pts = np.array([[0.9, 0.6], [0.8, 0.5], [0.85, 0.7], [0.7, 0.45]])
    groups = ["sam", "sgd", "sam", "sharpreg"]
    colours = group_colours(groups)
    assert len(set(colours.values())) == 3 and colours == group_colours(["sharpreg", "sgd", "sam"])  # fixed per name
    page = plot_front_html(pts, MAXMIN, tmp_path / "f.html", names=("test_acc", "attack_acc"), groups=groups).read_text()
    for group, colour in colours.items():
        assert f'fill="{colour}"' in page and f"{group} (" in page  # points and legend entries
    assert page.count(f'fill="{colours["sam"]}"') == 2
    assert "Pareto front (3)" in page  # (0.85, 0.7) is dominated by (0.9, 0.6)
    png = plot_front_png(pts, MAXMIN, tmp_path / "f.png", names=("test_acc", "attack_acc"), groups=groups)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_error_bars_only_where_there_are_replicates(tmp_path):
    pts = np.array([[0.9, 0.6], [0.8, 0.5]])
    errors = np.array([[0.01, 0.02], [nan, nan]])  # the second configuration ran once
    page = plot_front_html(pts, MAXMIN, tmp_path / "e.html", errors=errors, names=("test_acc", "attack_acc")).read_text()
    assert page.count('class="errorbar"') == 1 and "± 1 standard deviation" in page
    values = [d["values"] for d in _data(page)]
    assert any("test_acc=0.9 ± 0.01" in v for v in values) and any("test_acc=0.8  " in v for v in values)
    plain = plot_front_html(pts, MAXMIN, tmp_path / "p.html").read_text()
    assert 'class="errorbar"' not in plain and "standard deviation" not in plain
    assert plot_front_png(pts, MAXMIN, tmp_path / "e.png", errors=errors).stat().st_size > 5000


def test_html_points_link_to_their_runs_and_show_their_configuration(tmp_path):
    pts = np.array([[0.9, 0.6], [0.8, 0.5]])
    links = ["/#/experiments/1/runs/abc", "http://mlflow:5000/#/experiments/1/runs/def"]
    details = [{"optimizer": "sam", "rho": 0.05}, {"optimizer": "sgd"}]
    page = plot_front_html(pts, MAXMIN, tmp_path / "l.html", links=links, details=details).read_text()
    data = _data(page)
    assert {d["link"] for d in data} == set(links) and {d["details"]["optimizer"] for d in data} == {"sam", "sgd"}
    assert 'window.open(d.link, "_top")' in page and "click it to open its MLflow run" in page


def test_every_method_of_a_defense_front_gets_its_own_colour_and_defenses_their_own_marker():
    from samprivacy.report.plots import group_colours, group_markers

    methods = ["sgd", "sam", "sharpreg", "dp-sgd", "advreg", "selena", "memguard", "label_smoothing", "last_epoch",
               "selena+sharpreg"]
    colours, markers = group_colours(methods), group_markers(methods)
    assert len(set(colours.values())) == len(methods)
    assert {markers[m] for m in ("sgd", "sam", "sharpreg")} == {"o"}
    defenses = [markers[m] for m in methods[3:]]
    assert "o" not in defenses and len(set(defenses)) == len(defenses)
