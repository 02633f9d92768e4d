"""AppTest of the Responses page: chosen candidates' stored responses to one prompt appear side by side."""

import pytest

from mva_core.sweep import Evaluator, evaluate_base
from tests.apptest import open_page
from tests.tiny import make_tiny_workspace

METHOD = "mva-no-hsic"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A tiny workspace with the base model and three candidates evaluated by the engine."""
    root = tmp_path_factory.mktemp("respws")
    ws = make_tiny_workspace(root, method=METHOD)
    ev = Evaluator(ws, METHOD)
    base = evaluate_base(ws, ev.base)
    ids = ev.evaluate([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]).candidate_ids
    return root, ws, base, ids


def test_default_pick_is_base_and_each_values_best(evaluated, monkeypatch):
    root, ws, base, ids = evaluated
    at = open_page(monkeypatch, root, "pages/responses.py")
    # Independently: per value, the candidate with the highest mean raw score (argmax of one objective is on the front).
    resp = ws.store.responses(ids)
    means = resp.groupby("candidate_id")[["warmth", "brevity"]].mean()
    picked = at.multiselect(key=f"responses_pick_{METHOD}").value
    assert picked[0] == base and 2 <= len(picked) <= 3
    for scorer in ("warmth", "brevity"):  # ties allowed: some picked candidate reaches the best mean
        assert means.loc[picked[1:], scorer].max() == pytest.approx(means[scorer].max())


def test_two_candidates_side_by_side_for_filtered_prompt(evaluated, monkeypatch):
    root, ws, base, ids = evaluated
    a, b = ids[0], ids[2]
    at = open_page(monkeypatch, root, "pages/responses.py")
    at.multiselect(key=f"responses_pick_{METHOD}").set_value([a, b]).run()
    at.text_input(key="responses_filter").set_value("bread").run()
    assert not at.exception, at.exception
    prompt = "How do I bake bread?"
    assert at.selectbox(key="responses_prompt").value == prompt
    resp = ws.store.responses([a, b])
    expect = [resp[(resp["candidate_id"] == c) & (resp["prompt"] == prompt)]["response"].item() for c in (a, b)]
    assert [t.value for t in at.text] == expect  # one response per column, in pick order
    # each column shows each value's score for that prompt and its difference to the base model's response
    both = ws.store.responses([a, b, base]).set_index(["candidate_id", "prompt"])
    cards = [m.value.split("  \n") for m in at.markdown if m.value.startswith("**warmth**")]
    assert len(cards) == 2
    for card, c in zip(cards, (a, b)):
        for line, v in zip(card, ("warmth", "brevity")):
            s, s0 = both.loc[(c, prompt), v], both.loc[(base, prompt), v]
            assert line.startswith(f"**{v}** {s:.3f}") and f"{s - s0:+.3f} vs base" in line
    # the full table below lists both candidates on the one matching prompt
    full = at.dataframe[-1].value
    assert sorted(full["candidate"].tolist()) == sorted([a, b]) and set(full["prompt"]) == {prompt}
    # a filter nothing matches says so instead of failing
    at.text_input(key="responses_filter").set_value("zebra").run()
    assert not at.exception and any("No prompt contains" in w.value for w in at.warning)
