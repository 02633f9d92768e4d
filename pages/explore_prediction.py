"""Explore's surrogate answer, kept honest: the prediction made when Evaluate was pressed stays beside the measured
point until the sliders move, every prediction that met its measurement goes into the session's track record, and
at weights already stored the stored point is shown instead of a prediction."""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import pandas as pd
import streamlit as st

from mva_core.surrogate import Surrogate
from mva_core.table import weight_column, z_column
from pages.shared import Mark, hover_text

PREDICTION = "explore_prediction"  # {"method", "weights", "predicted": {value: (mean, sd)}, "candidate", "at"}
TRACK_RECORD = "explore_track_record"  # one row per prediction that met its measurement, this session
ORANGE = "#ff7f0e"

Predicted = dict[str, tuple[float, float]]  # value -> (mean z, sd z)


def same_weights(a: Sequence[float], b: Sequence[float]) -> bool:
    """The sliders' weights as stored (6 decimals: a slider step of 0.05 never collides)."""
    return len(a) == len(b) and bool(np.allclose(np.round(a, 6), np.round(b, 6), atol=1e-9))


def predict_at(model: Surrogate | None, values: Sequence[str], weights: Sequence[float]) -> Predicted | None:
    """The surrogate's mean and ±1 sd per value at `weights` (z units), or None without a surrogate."""
    if model is None:
        return None
    mean, sd = model.predict([list(weights)])
    return {v: (float(m), float(s)) for v, m, s in zip(values, mean[0], sd[0])}


def stored_at(cands: pd.DataFrame, values: Sequence[str], weights: Sequence[float]) -> pd.DataFrame:
    """The method's stored candidates at exactly these weights (for a conditioned policy: this preference p)."""
    cols = [weight_column(v) for v in values]
    if cands.empty or not set(cols) <= set(cands.columns):
        return cands.iloc[:0]
    W = np.round(cands[cols].to_numpy(dtype=float), 6)
    return cands[np.isclose(W, np.round(np.asarray(weights, dtype=float), 6), atol=1e-9).all(axis=1)]


def remember_prediction(method: str, weights: Sequence[float], predicted: Predicted | None,
                        already_stored: bool) -> None:
    """On Evaluate: keep what the surrogate predicted at these weights before the measurement exists (not when the
    point is stored already: the surrogate was fitted on it, so its answer is no prediction)."""
    if predicted is None or already_stored:
        st.session_state.pop(PREDICTION, None)
        return
    st.session_state[PREDICTION] = {"method": method, "weights": [float(w) for w in weights],
                                    "predicted": predicted, "candidate": None, "at": time.time()}


def kept_prediction(method: str, weights: Sequence[float], here: pd.DataFrame) -> dict[str, Any] | None:
    """The prediction made at these weights before they were measured, once the measurement is stored (`here`: the
    method's stored candidates at the sliders' weights); its first sight is logged in the track record. Moving
    a slider or switching method forgets it."""
    kept = st.session_state.get(PREDICTION)
    if kept is None:
        return None
    if kept["method"] != method or not same_weights(kept["weights"], weights):
        del st.session_state[PREDICTION]  # the sliders moved: the comparison is over
        return None
    if here.empty:
        return None  # not measured yet (cancelled, or still running): the live prediction shows instead
    if kept["candidate"] is None:
        kept["candidate"] = int(here["id"].iloc[-1])
        st.session_state.setdefault(TRACK_RECORD, []).append(
            {"candidate": kept["candidate"], "method": method, "weights": kept["weights"],
             "predicted": kept["predicted"]})
    return kept


def prediction_mark(predicted: Predicted, x: str, y: str, name: str, head: str, filled: bool = False) -> Mark:
    """A star at the predicted z with ±1 sd bars on both axes (the 2-D chart's layer)."""
    return Mark(pd.DataFrame([{z_column(v): m for v, (m, _) in predicted.items()}]), name,
                dict(symbol="star-open" if not filled else "star-open-dot", size=18, color=ORANGE, line=dict(width=2)),
                dict(error_x=dict(type="data", array=[predicted[x][1]], color=ORANGE),
                     error_y=dict(type="data", array=[predicted[y][1]], color=ORANGE),
                     hoverinfo="text", hovertext=[head + "<br>" + "<br>".join(
                         f"{v}: z={m:+.2f} ± {d:.2f}" for v, (m, d) in predicted.items())]))


def kept_layers(kept: dict[str, Any], measured: pd.DataFrame, x: str, y: str) -> list[Mark]:
    """The kept prediction (star, ±1 sd) and a dotted segment from it to the measured point."""
    pred: Predicted = {v: (float(m), float(s)) for v, (m, s) in kept["predicted"].items()}
    row = measured.iloc[-1]
    segment = pd.DataFrame([{z_column(x): pred[x][0], z_column(y): pred[y][0]},
                            {z_column(x): float(row[z_column(x)]), z_column(y): float(row[z_column(y)])}])
    return [prediction_mark(pred, x, y, "predicted before measuring",
                            f"predicted here before candidate {kept['candidate']} was measured (±1 sd)"),
            Mark(segment, "prediction → measured", dict(size=1, color=ORANGE),
                 dict(mode="lines", line=dict(color=ORANGE, dash="dot", width=1.5), hoverinfo="skip"))]


def stored_mark(here: pd.DataFrame, values: Sequence[str]) -> Mark:
    """The stored candidate at the sliders' weights, shown instead of a prediction there."""
    return Mark(here, "stored at these weights", dict(symbol="star-diamond", size=18, color=ORANGE,
                                                      line=dict(width=1, color="black")),
                dict(hovertext=["stored at the sliders' weights<br>" + h for h in hover_text(here, values)],
                     hoverinfo="text", customdata=here["id"]))


def track_record(table: pd.DataFrame, values: Sequence[str]) -> pd.DataFrame:
    """One row per prediction of this session that met its measurement: weights, predicted z ± sd, measured z,
    error (measured − predicted) and whether the measurement fell within ±2 sd, per value."""
    rows = []
    for rec in st.session_state.get(TRACK_RECORD, []):
        hit = table[(table["id"] == rec["candidate"]) & (table["method"] == rec["method"])]
        if hit.empty:
            continue
        r = hit.iloc[0]
        row: dict[str, Any] = {"candidate": rec["candidate"], "method": rec["method"],
                               "weights": ", ".join(f"{w:g}" for w in rec["weights"])}
        for v in values:
            m, s = rec["predicted"][v]
            z = float(r[z_column(v)])
            row.update({f"{v} predicted": m, f"{v} ± sd": s, f"{v} measured": z, f"{v} error": z - m,
                        f"{v} within 2 sd": abs(z - m) <= 2 * s})
        rows.append(row)
    return pd.DataFrame(rows)


def track_record_section(table: pd.DataFrame, values: Sequence[str]) -> None:
    """The surrogate's track record this session: predicted vs measured for every evaluated prediction."""
    record = track_record(table, values)
    if record.empty:
        return
    with st.expander(f"Surrogate track record this session: {len(record)} prediction(s) vs their measurement",
                     expanded=False):
        fmt = {c: st.column_config.NumberColumn(c, format="%+.3f") for c in record.columns
               if c.endswith(("predicted", "measured", "error"))}
        fmt.update({c: st.column_config.NumberColumn(c, format="%.3f") for c in record.columns if c.endswith("± sd")})
        st.dataframe(record, hide_index=True, width="stretch", column_config=fmt, key="explore_track_record_table")
        inside = record[[f"{v} within 2 sd" for v in values]].to_numpy(dtype=bool)
        st.caption("Mean |measured − predicted|: " + " · ".join(
            f"{v} {record[f'{v} error'].abs().mean():.3f} z" for v in values)
            + f"; measured within ±2 sd of the prediction: {int(inside.sum())} of {inside.size} "
              f"({inside.mean():.0%}; a calibrated surrogate lands near 95 %).")


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
