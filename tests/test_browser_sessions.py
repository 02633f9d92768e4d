"""Two real browsers on one `streamlit run app.py` server (issue 19 item 3): two Playwright contexts (separate
cookies and sessions) evaluate different weights at the same time on the Explore page. Each must see only its own
point, scores, responses and export; the store must hold both candidates once.

The workspace is a tiny random Llama (tests/tiny.py) made to decode 160 tokens per prompt, so one evaluation lasts
long enough for the second browser's to start while the first runs (the test checks that both were running at once).
What each browser shows is checked against the store and against numbers computed here: the brevity score by hand
from the stored responses, the exported weights against `compose.merge` of the base at that browser's weights.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from mva_core.compose import merge
from mva_core.models import load_base
from mva_core.sweep import Evaluator, evaluate_base
from mva_core.vectors import load_value_vector
from mva_core.workspace import MANIFEST, Workspace
from tests.browser import CHROMIUM, CHROMIUM_ARGS, serve_app, set_weights, your_point
from tests.tiny import make_tiny_workspace

METHOD = "mva-no-hsic"
# Slider moves from the default 0.5 (step 0.05): A = (0.85, 0.35), B = (0.15, 0.7); both off the stored grid and
# off the simplex (a point with weights summing to 1 is also a `soup` candidate, drawn once per method).
MOVES = {"A": (7, -3), "B": (-7, 4)}
WEIGHTS = {"A": (0.85, 0.35), "B": (0.15, 0.7)}


@pytest.fixture(scope="module")
def ws_root(tmp_path_factory):
    ws = make_tiny_workspace(tmp_path_factory.mktemp("two_browsers") / "ws", n_prompts=4)
    manifest = json.loads((ws.root / MANIFEST).read_text())
    manifest["decoding"].update(max_new_tokens=160, min_new_tokens=160, batch_size=4)
    (ws.root / MANIFEST).write_text(json.dumps(manifest))
    ws = Workspace(ws.root)
    ev = Evaluator(ws, METHOD)
    evaluate_base(ws, ev.base)
    ev.evaluate([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # a chart to land on
    return ws.root


def brevity(responses: list[str]) -> float:
    """The brevity scorer computed by hand: mean of 1 / (1 + words / 20)."""
    return float(np.mean([1.0 / (1.0 + len(r.split()) / 20.0) for r in responses]))


def running(page) -> bool:
    return page.get_by_text("Evaluating weights", exact=False).count() > 0


def metrics(page) -> dict[str, str]:
    """st.metric label -> value as shown."""
    return dict(page.evaluate("""() => [...document.querySelectorAll('[data-testid="stMetric"]')].map(m => {
        const t = m.innerText.split('\\n').filter(s => s.trim()); return [t[0], t[1]]; })"""))


def responses_shown(page) -> list[str]:
    """The response column of the first dataframe after the 'Your candidate' heading (the page's last section),
    read from the grid's accessible table, which is drawn once the grid is in view."""
    page.locator('[data-testid="stDataFrame"]').last.scroll_into_view_if_needed()
    return page.wait_for_function("""() => {
        const h = [...document.querySelectorAll('h3')].find(e => e.innerText.startsWith('Your candidate'));
        const grid = h && [...document.querySelectorAll('[data-testid="stDataFrame"]')]
            .find(d => h.compareDocumentPosition(d) & Node.DOCUMENT_POSITION_FOLLOWING);
        const rows = grid ? [...grid.querySelectorAll('table tr')].map(r => [...r.children].map(c => c.textContent))
                          : [];
        const col = rows.length ? rows[0].indexOf('response') : -1;
        return col >= 0 && rows.length > 1 ? rows.slice(1).map(r => r[col]) : null;
    }""", timeout=60_000).json_value()


@pytest.mark.slow
def test_two_browsers_evaluate_at_once_and_each_sees_its_own(ws_root, tmp_path):
    from playwright.sync_api import sync_playwright

    with serve_app(ws_root, tmp_path / "server.log") as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        pages = {}
        for name in MOVES:  # two contexts: two cookie jars, two Streamlit sessions
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.goto(url, timeout=60_000)
            page.wait_for_selector(".js-plotly-plot", timeout=120_000)
            assert your_point(page) is None
            set_weights(page, MOVES[name])
            pages[name] = page

        # ---- Both press Evaluate; both must be running at one moment ----
        for page in pages.values():
            page.get_by_role("button", name="Evaluate").click()
        both_running, deadline = False, time.time() + 600
        while time.time() < deadline and not all((your_point(pg) or {}).get("count") == 1 for pg in pages.values()):
            both_running = both_running or all(running(pg) for pg in pages.values())
            time.sleep(0.05)
        assert all(your_point(pg)["count"] == 1 for pg in pages.values())
        assert both_running, "the two evaluations never ran at the same time"

        # ---- The store: both candidates, once each, with their weights ----
        ws = Workspace(ws_root)
        table = ws.store.candidates()
        live = table[table["source"] == "live"]
        assert len(live) == 2 and table["key"].is_unique
        ids = {name: int(live[[tuple(np.round(w, 6)) == WEIGHTS[name] for w in live["weights"]]]["id"].item())
               for name in MOVES}
        stored = {name: ws.store.responses([cid])["response"].tolist() for name, cid in ids.items()}
        assert stored["A"] != stored["B"]  # the two points are told apart by what they generated

        # ---- Each browser: its own point, scores and responses ----
        for name, page in pages.items():
            cid, other = ids[name], ids["B" if name == "A" else "A"]
            page.get_by_role("heading", name=f"Your candidate #{cid}").wait_for(timeout=30_000)
            assert page.get_by_role("heading", name=f"Your candidate #{other}").count() == 0
            point = your_point(page)
            assert point["hover"].startswith(f"candidate {cid}<br>"), point
            assert f"w_warmth = {WEIGHTS[name][0]:.2f}<br>w_brevity = {WEIGHTS[name][1]:.2f}" in point["hover"]
            shown = metrics(page)
            assert shown["brevity"] == f"{brevity(stored[name]):.3f}", (name, shown)
            row = table[table["id"] == cid].iloc[0]
            assert shown["warmth"] == f"{row['s_warmth']:.3f}"
            assert responses_shown(page) == ws.store.responses([cid]).sort_values("prompt_idx")["response"].tolist()

        # ---- Each exports its own candidate (both at once) ----
        for page in pages.values():
            page.get_by_role("button", name="Export merged model").click()
        base = load_base(ws.manifest.base)
        vectors = [load_value_vector(ws.root / "vectors" / METHOD / v) for v in ws.value_names]
        for name, page in pages.items():
            cid = ids[name]
            note = page.get_by_text("Exported to", exact=False)
            note.wait_for(timeout=300_000)
            out = ws.root / "exports" / f"candidate-{cid}-merged"
            assert str(out) in note.inner_text()
            got = load_file(str(out / "model.safetensors"))
            want = merge(base.model, vectors, WEIGHTS[name]).state_dict()
            for key, tensor in got.items():
                torch.testing.assert_close(tensor, want[key], atol=1e-6, rtol=0)
            card = yaml.safe_load((out / "README.md").read_text().split("---\n")[1])["mva"]
            assert card["candidate_id"] == cid and card["weights"] == dict(zip(ws.value_names, WEIGHTS[name]))
        assert sorted(p.name for p in (ws.root / "exports").iterdir()) == sorted(
            f"candidate-{ids[n]}-merged" for n in MOVES)
        browser.close()
    assert len(Workspace(ws_root).store.candidates()) == len(table)  # nothing added by exporting
