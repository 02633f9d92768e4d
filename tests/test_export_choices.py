"""Exports say what they are (issue 17 item 6): the size shown before writing matches what is written, the card names
the method row the user exported from (one candidate can be a point of several), and the Export page offers the
written folders as a zip."""

from __future__ import annotations

import pytest
import yaml

from mva_core.export import estimated_export_bytes, export_candidate
from mva_core.sweep import Evaluator, evaluate_base
from tests.apptest import open_page
from tests.tiny import make_tiny_workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = make_tiny_workspace(tmp_path_factory.mktemp("choices"), n_prompts=2)
    ev = Evaluator(ws, "mva-no-hsic")
    evaluate_base(ws, ev.base)
    ev.evaluate([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]])
    return ws


def test_estimated_size_matches_the_written_weights(ws, tmp_path):
    cid = int(ws.store.candidates("mva-no-hsic")["id"].iloc[0])
    dirs = ws.vector_dirs("mva-no-hsic")
    merged = export_candidate(ws, cid, "merged", tmp_path / "m")
    peft = export_candidate(ws, cid, "peft", tmp_path / "p")
    for out, fmt, weights in [(merged, "merged", "model.safetensors"), (peft, "peft", "adapter_model.safetensors")]:
        want = (out / weights).stat().st_size
        got = estimated_export_bytes(ws.root / "base", dirs, fmt)
        assert got == pytest.approx(want, rel=0.02, abs=4096), fmt  # only the few-KB safetensors header is not counted
    assert estimated_export_bytes(None, dirs, "merged") is None  # a base not on this disk: unknown, not guessed


def test_card_names_the_method_row_exported_from(ws, tmp_path):
    cands = ws.store.candidates("mva-no-hsic")
    cid = int(cands[cands["weights"].map(lambda w: w == [0.5, 0.5])]["id"].iloc[0])  # also a soup point
    for method in ("soup", "mva-no-hsic"):
        out = export_candidate(ws, cid, "card", tmp_path / method, method=method)
        meta = yaml.safe_load((out / "README.md").read_text().split("---")[1])["mva"]
        assert meta["method"] == method and meta["on_front"] in (True, False)
    with pytest.raises(ValueError, match="is not a point of method 'dpo-lw'"):
        export_candidate(ws, cid, "card", tmp_path / "x", method="dpo-lw")


def test_export_page_offers_a_zip_of_what_it_wrote(ws, monkeypatch):
    at = open_page(monkeypatch, ws.root, "pages/export.py")
    at.selectbox(key="export_method").set_value("mva-no-hsic").run()
    at.selectbox(key="export_format").set_value("card").run()
    at.button(key="export_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(b.proto.label.startswith("Download as zip") for b in at.get("download_button"))
