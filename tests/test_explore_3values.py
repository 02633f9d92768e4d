"""3-value charts (issue 31 item 5): a front over three values drawn in two of them is marked, not joined by a line
(its points zigzag across the cloud in projection); the 3-D chart spans the page with the parallel coordinates
right under it; axis labels are rounded (0.54, not 0.53564)."""

from __future__ import annotations

import json
import shutil

import pytest

import numpy as np
import pandas as pd

from mva_core.demo import DEMOS
from tests.apptest import open_page
from pages.explore_3d import parallel_coordinates, tick_format
from pages.shared import Front, front_figure


def rows(n_values: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(12, n_values))
    front = [not any((Z[j] >= Z[i]).all() and (Z[j] > Z[i]).any() for j in range(12)) for i in range(12)]
    names = ["warmth", "brevity", "relevance"][:n_values]
    return pd.DataFrame({**{f"z_{v}": Z[:, k] for k, v in enumerate(names)}, "on_front": front, "id": range(12)})


def line_traces(fig) -> list[str]:
    return [t.name for t in fig.data if "lines" in (t.mode or "")]


def test_a_projected_front_gets_no_line():
    three, two = rows(3), rows(2)
    fig = front_figure("warmth", "brevity", [Front(three, [""] * 12)])
    assert line_traces(fig) == []
    marked = next(t for t in fig.data if t.name == "Pareto front (all values)")
    assert sorted(marked.customdata) == three.loc[three["on_front"], "id"].tolist()  # every front point, marked
    assert line_traces(front_figure("warmth", "brevity", [Front(two, [""] * 12)])) == ["front line"]
    # several methods overlaid (Compare): each front's points marked, none joined
    fig = front_figure("warmth", "brevity", [Front(three, [""] * 12, "mva", "#d62728"),
                                             Front(three.assign(id=three["id"] + 100), [""] * 12, "soup", "#2ca02c")])
    assert line_traces(fig) == [] and {t.name for t in fig.data} >= {"mva front (all values)", "soup front (all values)"}
    assert line_traces(front_figure("warmth", "brevity", [Front(two, [""] * 12, "mva", "#d62728")])) == ["mva"]
    assert line_traces(front_figure("warmth", "brevity", [Front(three, [""] * 12, projected=False)])) == ["front line"]


def test_axis_labels_are_rounded():
    assert tick_format([0.53564, -1.2, 2.1]) == ".2f"  # 0.54
    assert tick_format([0.5356, 0.5421]) == ".3f"  # a span of 0.0065: neighbouring ticks still differ
    cands = rows(3).assign(z_warmth=lambda f: f["z_warmth"] + 0.53564)
    dims = parallel_coordinates(cands, ["warmth", "brevity", "relevance"], {}, []).data[0].dimensions
    assert [d.tickformat for d in dims] == [".2f"] * 3


@pytest.mark.slow  # over 1.4 s: keeps `-m "not slow"` under 2 minutes (issue 26 item 8)
def test_demo3_explore_charts(tmp_path, monkeypatch):
    root = tmp_path / "demo3"
    shutil.copytree(DEMOS["demo3"].root, root)  # never write into the shipped copy
    at = open_page(monkeypatch, root)
    charts = {c.proto.id.rsplit("-", 1)[-1]: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    flat = charts["explore_plot"]
    assert not [t.get("name") for t in flat["data"] if "lines" in t.get("mode", "") and "front" in t.get("name", "")]
    assert any(t.get("name") == "Pareto front (all values)" for t in flat["data"])
    scene = charts["explore_3d"]["layout"]["scene"]
    assert charts["explore_3d"]["layout"]["height"] >= 600
    assert {scene[f"{k}axis"]["tickformat"] for k in "xyz"} == {".2f"}
    assert {d["tickformat"] for d in charts["explore_parcoords"]["data"][0]["dimensions"]} == {".2f"}
    ids = [c.proto.id.rsplit("-", 1)[-1] for c in at.get("plotly_chart")]
    assert ids.index("explore_parcoords") == ids.index("explore_3d") + 1  # right under the 3-D chart
