"""Explore's "Which answer is better?" panel (issue 29 item 3): two candidates' responses to one prompt, the user's
pick, the posterior over weight directions (mva_core.elicit) drawn on the chart as a region, and after at most
MAX_PICKS picks the recommended weights with the nearest front candidate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from mva_core.elicit import CREDIBLE, MAX_PICKS, Elicitation, per_prompt_z, recommend, session
from mva_core.metrics import prompt_rewards
from mva_core.table import weight_column, z_column
from mva_core.workspace import Workspace
from pages.shared import Mark, get_candidates, get_workspace

CHOICE_LABEL = {"A": "A is better", "B": "B is better", "same": "About the same"}


@st.cache_data(show_spinner="Reading the candidates' per-prompt scores…")
def get_pool(root: str, version: int, method: str) -> tuple[list[int], np.ndarray]:
    """The method's finite candidates (ids) and each response's z-scores against the base model, (K, P, V)."""
    table = get_candidates(root, version)
    rows = table.for_method(method)
    ids = rows.ids()[rows.finite()].astype(int).tolist()
    base_id = table.base_id()
    if base_id is None or len(ids) < 2:
        return ids, np.zeros((len(ids), 0, len(table.value_names)))
    ws = get_workspace(root)
    return ids, per_prompt_z(prompt_rewards(ws, ids), prompt_rewards(ws, [base_id])[0])


def elicit_panel(ws: Workspace, cands: pd.DataFrame, method: str, x_name: str, y_name: str,
                 slider: str = "w_") -> list[Mark]:
    """The panel (an expander) over `method`'s finite candidates `cands`; returns the posterior's chart layers.
    `slider`: the prefix of the sliders the recommended candidate's weights load into (Explore's `w_`, or `cp_` for
    the preference p of a conditioned policy)."""
    values = list(ws.value_names)
    key = f"elicit_picks_{method}"
    picks: list[list] = st.session_state.setdefault(key, [])
    ids, Z = get_pool(str(ws.root), ws.store.version(), method)
    layers: list[Mark] = []
    with st.expander(f"Find my weights: which answer is better? ({len(picks)}/{MAX_PICKS} picks)",
                     expanded=bool(picks)):
        if Z.shape[1] == 0:
            st.info("Needs two or more scored candidates of this method and the base model's responses (a sweep "
                    "evaluates it).")
            return layers
        index = {cid: k for k, cid in enumerate(ids)}
        known = [p for p in picks if p[0] in index and p[1] in index]
        e = session(Z, [(index[a], index[b], j, c) for a, b, j, c in known])
        if len(known) < MAX_PICKS:
            a, b, j = e.next_pair()
            ca, cb = ids[a], ids[b]
            resp = ws.store.responses([ca, cb])
            resp = resp[resp["prompt_idx"] == j]
            text = dict(zip(resp["candidate_id"].astype(int), resp["response"]))
            st.markdown(f"**Prompt:** {resp['prompt'].iloc[0] if len(resp) else '—'}")
            c1, c2 = st.columns(2)
            c1.markdown("**A**")
            c1.text(text.get(ca, "—"))
            c2.markdown("**B**")
            c2.text(text.get(cb, "—"))

            def answer(choice: str, a: int = ca, b: int = cb, j: int = j) -> None:
                st.session_state[key] = [*st.session_state.get(key, []), [a, b, j, choice]]

            b1, b2, b3, b4 = st.columns(4)
            for col, choice in zip((b1, b2, b3), ("A", "B", "same")):
                col.button(CHOICE_LABEL[choice], key=f"elicit_{choice}", on_click=answer, args=(choice,),
                           width="stretch")
            b4.button("Start again", key="elicit_reset", on_click=lambda: st.session_state.pop(key, None),
                      width="stretch", disabled=not known)
            st.caption("The two answers come from two of this method's candidates, chosen so that your pick tells "
                       "the most about your trade-off (expected information gain). Which model wrote which is "
                       "shown only after the last pick.")
        if not known:
            return layers
        front = cands[cands["on_front"].astype(bool)]
        rec = recommend(e, front[[z_column(v) for v in values]].to_numpy(dtype=float))
        best = front.iloc[rec.candidate] if rec.candidate is not None else None
        final = len(known) >= MAX_PICKS
        st.markdown(("**Recommended weights**" if final else "**Your weights so far**")
                    + f" (posterior mean, Σ = 1): " + ", ".join(f"{v} {x:.2f}" for v, x in zip(values, rec.preference))
                    + f"; {CREDIBLE:.0%} credible region within {rec.spread_deg:.0f}° of it.")
        if best is not None:
            others = [int(front.iloc[i]["id"]) for i in rec.region_candidates if i != rec.candidate]
            st.markdown(f"Nearest front candidate (maximises p·z): **#{int(best['id'])}**, weights "
                        + ", ".join(f"{v} {best[weight_column(v)]:.2f}" for v in values if weight_column(v) in best)
                        + (f"; the credible region also picks {', '.join(f'#{i}' for i in others)}." if others
                           else "; every direction of the credible region picks it."))
            if final:
                def load() -> None:
                    for v in values:
                        w = best.get(weight_column(v), np.nan)
                        if np.isfinite(w):
                            top = 1.0 if slider == "cp_" else ws.manifest.C
                            st.session_state[f"{slider}{v}"] = float(np.clip(w, 0.0, top))
                st.button("Load its weights into the sliders", key="elicit_load", on_click=load)
                st.button("Start again", key="elicit_reset_done", on_click=lambda: st.session_state.pop(key, None))
                st.caption("Your picks: " + "; ".join(f"#{a} vs #{b} on prompt {j + 1}: {CHOICE_LABEL[c].lower()}"
                                                      for a, b, j, c in known))
        layers += region_layers(e, values, x_name, y_name, cands)
        if best is not None:
            layers.append(Mark(front.iloc[[rec.candidate]], "your weights: nearest front candidate",
                               dict(symbol="hexagram-open", size=26, color="#8c564b", line=dict(width=3)),
                               dict(hoverinfo="skip")))
    return layers


def region_layers(e: Elicitation, values: list[str], x_name: str, y_name: str, cands: pd.DataFrame) -> list[Mark]:
    """The credible directions as a wedge from the base model (z = 0) in the chart's two axes, and the posterior
    mean direction as a line: the way your picks say the model should move."""
    ix, iy = values.index(x_name), values.index(y_name)
    region = e.grid[e.credible_region()]
    angles = np.arctan2(region[:, iy], region[:, ix])
    u = e.mean_direction()
    radius = 1.1 * float(np.nanmax(np.hypot(cands[z_column(x_name)], cands[z_column(y_name)]))) if len(cands) else 1.0
    radius = radius if np.isfinite(radius) and radius > 0 else 1.0
    arc = np.linspace(angles.min(), angles.max(), 24)
    wedge = pd.DataFrame({z_column(x_name): [0.0, *(radius * np.cos(arc)), 0.0],
                          z_column(y_name): [0.0, *(radius * np.sin(arc)), 0.0]})
    norm = float(np.hypot(u[ix], u[iy])) or 1.0
    ray = pd.DataFrame({z_column(x_name): [0.0, radius * u[ix] / norm], z_column(y_name): [0.0, radius * u[iy] / norm]})
    return [Mark(wedge, f"your weights: {CREDIBLE:.0%} credible directions", dict(size=1, color="#8c564b"),
                 dict(mode="lines", fill="toself", fillcolor="rgba(140, 86, 75, 0.15)",
                      line=dict(color="rgba(140, 86, 75, 0.5)", width=1), hoverinfo="skip")),
            Mark(ray, "your weights: posterior mean direction", dict(size=1, color="#8c564b"),
                 dict(mode="lines", line=dict(color="#8c564b", width=2, dash="dash"), hoverinfo="skip"))]


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
