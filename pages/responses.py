"""Responses: what chosen candidates actually said to the same prompt, side by side, with each value's score."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from mva_core.table import is_base, z_column
from mva_core.pareto import is_finite
from pages.shared import (
    current_workspace, forget_stale, get_candidates, get_workspace, pick_method, table_version,
)

PER_ROW = 4  # side-by-side columns per row; more candidates wrap onto the next row


@st.cache_data(show_spinner=False)
def get_responses(root: str, ids: tuple[int, ...], version: int) -> pd.DataFrame:
    """Long table (candidate, prompt, response, raw score per scorer); `version` invalidates it."""
    return get_workspace(root).store.responses(list(ids))


def render() -> None:
    """The Responses page: chosen candidates' answers to one prompt side by side, with their scores."""
    ws = current_workspace()
    if ws is None:
        st.stop()
    values = ws.value_names
    scorer_of = {v.name: v.scorer for v in ws.manifest.values}

    st.title("Read the responses")
    st.caption("Pick candidates and a prompt: their responses appear side by side with each value's score on that "
               "prompt (raw scorer output, and in colour the difference to the base model's response to the same prompt).")
    if ws.manifest.decoding.do_sample and ws.manifest.decoding.num_samples > 1:
        st.caption(f"Sampled decoding: each candidate has {ws.manifest.decoding.num_samples} responses per prompt; shown is "
                   "the first, and each score is the mean over all of them (the reward a candidate is placed by).")
    candidates = get_candidates(str(ws.root), table_version(ws))
    table = candidates.frame

    # ---- Candidates ----
    method = pick_method(ws, table, "responses_method")
    shown = candidates.for_methods([method]).frame
    rows = {int(r["id"]): r for _, r in shown.iterrows()}
    base_id = candidates.base_id()  # the one the table normalises against


    def weights_text(r) -> str:
        return "base model (no vectors)" if is_base(r["method"]) else \
            "w = (" + ", ".join(f"{w:g}" for w in np.round(r["weights"], 3)) + ")"


    def label(cid: int) -> str:
        r = rows[cid]
        if is_base(r["method"]):
            return f"#{cid} · base model"
        scores = " · ".join(f"{v} {r[z_column(v)]:+.2f}" for v in values)
        return f"#{cid} · {weights_text(r)} · {scores}" + (" · front" if r["on_front"] else "")


    pick_key = f"responses_pick_{method}"  # one selection per method: switching methods keeps each
    forget_stale(pick_key, rows)  # e.g. another workspace's ids
    if pick_key not in st.session_state:
        front = shown[(shown["method"] == method) & shown["on_front"] & shown["finite"]]
        extremes = [int(front.loc[front[z_column(v)].idxmax(), "id"]) for v in values] if not front.empty else []
        st.session_state[pick_key] = list(dict.fromkeys(([base_id] if base_id is not None else []) + extremes))
    picked = st.multiselect("Candidates", list(rows), format_func=label, key=pick_key,
                            help="Labelled by weights and z-scores vs the base model. Default: the base model and, "
                                 "for each value, the front candidate that scores highest on it.")
    if not picked:
        st.info("Pick at least one candidate.")
        st.stop()

    # ---- Prompt ----
    wanted = tuple(sorted(set(picked) | ({base_id} if base_id is not None else set())))
    resp = get_responses(str(ws.root), wanted, table_version(ws))
    prompts = list(dict.fromkeys(resp["prompt"]))
    c1, c2 = st.columns([1, 2])
    needle = c1.text_input("Filter prompts", key="responses_filter", placeholder="words in the prompt")
    matching = [p for p in prompts if needle.strip().lower() in p.lower()]
    if not matching:
        st.warning(f"No prompt contains {needle!r}; clear the filter to see all {len(prompts)}.")
        st.stop()
    if st.session_state.get("responses_prompt") not in matching:  # the filter removed the old choice
        st.session_state["responses_prompt"] = matching[0]
    prompt = c2.selectbox(f"Prompt ({len(matching)} of {len(prompts)})", matching, key="responses_prompt")

    # ---- Side by side ----
    at_prompt = resp[resp["prompt"] == prompt].drop_duplicates("candidate_id").set_index("candidate_id")
    base_row = at_prompt.loc[base_id] if base_id in at_prompt.index else None
    st.markdown(f"**Prompt:** {prompt}")
    for start in range(0, len(picked), PER_ROW):
        part = picked[start:start + PER_ROW]
        for col, cid in zip(st.columns(PER_ROW), part):
            r = rows[cid]
            with col.container(border=True):
                st.markdown(f"**#{cid}**" + (" · on the front" if r["on_front"] and not is_base(r["method"]) else ""))
                st.caption(weights_text(r))
                if cid not in at_prompt.index:
                    st.warning("Not evaluated on this prompt (another prompt set).")
                    continue
                here = at_prompt.loc[cid]
                lines = []
                for v in values:
                    s = float(here.get(scorer_of[v], np.nan))
                    delta = np.nan if base_row is None or cid == base_id else s - float(base_row.get(scorer_of[v], np.nan))
                    color = "green" if delta > 0 else "red" if delta < 0 else "gray"
                    lines.append(f"**{v}** {s:.3f}" + (f" · :{color}[{delta:+.3f} vs base]" if is_finite(delta) else ""))
                st.markdown("  \n".join(lines))
                st.text(here["response"])

    # ---- All responses ----
    st.subheader("All responses of the chosen candidates")
    full = resp[resp["candidate_id"].isin(picked) & resp["prompt"].isin(matching)]
    full = full.assign(weights=full["candidate_id"].map(lambda c: weights_text(rows[c])))
    full = full.rename(columns={scorer_of[v]: v for v in values})
    cols = ["candidate_id", "weights", "prompt", "response"] + [v for v in values if v in full]
    st.dataframe(full[cols].rename(columns={"candidate_id": "candidate"}), width="stretch", hide_index=True)


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
