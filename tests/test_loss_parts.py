"""The logged training loss split into its DPO part and its weighted penalty (issue 31 item 6), against the demo's
first mva step worked by hand: 13.970602 = L_DPO + 10 × 1.3277454, and L_DPO = log 2 at step 1 (the adapter's B
starts at 0, so the policy is the reference)."""

import math

import pytest

from mva_core.diagnostics import _curve_rows, loss_parts


def test_parts_of_the_demo_first_step():
    dpo, pen = loss_parts(13.970602, 1.3277454, 10.0)
    assert dpo == pytest.approx(math.log(2), abs=1e-6) and pen == pytest.approx(13.277454)


def test_no_term_is_all_dpo_and_no_weight_is_unknown():
    assert loss_parts(0.69, math.nan, 10.0) == (0.69, 0.0)  # the first value: no earlier vector
    assert all(math.isnan(x) for x in loss_parts(13.9, 1.3, None))  # weight not recorded: not guessed
    assert all(math.isnan(x) for x in loss_parts(math.nan, 1.3, 10.0))


def test_curve_rows_carry_the_parts():
    rows = _curve_rows({"alpha": 10.0}, {"losses": [13.970602, 13.857169], "hsic_terms": [1.3277454, 1.3159922]},
                       "hsic")
    assert [r["dpo_part"] for r in rows] == pytest.approx([13.970602 - 13.277454, 13.857169 - 13.159922])
    assert [r["weighted_penalty"] for r in rows] == pytest.approx([13.277454, 13.159922])
    assert [r["dpo_part"] + r["weighted_penalty"] for r in rows] == pytest.approx([r["loss"] for r in rows])
