"""Export: write chosen candidates (default: a method's Pareto front) as models, adapters, recipes or cards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from mva_core.export import FORMATS
from mva_core.results import export_candidate
from mva_core.models import ModelLoadError
from mva_core.workspace import WorkspaceError
from views.shared import current_workspace, get_table, methods_with_candidates, table_version

FORMAT_HELP = {
    "merged": "a full model dir: W + Σ wᵢ·ΔWᵢ in safetensors + tokenizer + model card (checked by reloading it)",
    "peft": "one LoRA adapter equal to Σ wᵢ·θᵢ (ranks concatenated); loads with PeftModel.from_pretrained",
    "mergekit": "a mergekit task_arithmetic recipe (mergekit.yaml) that rebuilds the same model",
    "card": "the model card only (README.md: base, weights, scores, vector hashes)",
    "csv": "the whole candidate table (candidates.csv + candidates.json), once",
}

ws = current_workspace()
if ws is None:
    st.stop()
values = ws.value_names

st.title("Export models")
st.caption("Pick candidates (by default the Pareto front of a method: no other candidate of it scores at least as "
           "well on every value and better on one), a format, and a folder name under the workspace's exports/. "
           "Each candidate is written to a temp dir and renamed into place, so a failed export leaves nothing.")
table = get_table(str(ws.root), table_version(ws))
methods = methods_with_candidates(ws, table)
if not methods:
    st.info("No candidates stored yet: evaluate one on the Explore page or run a sweep.")
    st.stop()

# ---- Candidates ----
if st.session_state.get("export_method") not in methods:  # e.g. after switching workspace
    st.session_state.pop("export_method", None)
method = st.selectbox("Method", methods, key="export_method")
shown = table[table["method"] == method]
rows = {int(r["id"]): r for _, r in shown.iterrows()}


def label(cid: int) -> str:
    r = rows[cid]
    w = ", ".join(f"{x:g}" for x in np.round(r["weights"], 3))
    scores = " · ".join(f"{v} {r[f'z_{v}']:+.2f}" for v in values)
    return f"#{cid} · w = ({w}) · {scores}" + (" · front" if r["on_front"] else "")


pick_key = f"export_pick_{method}"  # one selection per method
if pick_key not in st.session_state:
    st.session_state[pick_key] = [int(i) for i in shown.loc[shown["on_front"] & shown["finite"], "id"]]
st.session_state[pick_key] = [c for c in st.session_state[pick_key] if c in rows]
picked = st.multiselect("Candidates", list(rows), format_func=label, key=pick_key,
                        help="Labelled by weights and z-scores vs the base model; default: the method's front.")

# ---- Format and target ----
c1, c2 = st.columns([1, 2])
fmt = c1.selectbox("Format", FORMATS, key="export_format")
c1.caption(FORMAT_HELP[fmt])
auto_name = f"{method}-front"  # follows the method until the user types another name
if st.session_state.get("export_name") in (None, st.session_state.get("export_name_auto")):
    st.session_state["export_name"] = auto_name
st.session_state["export_name_auto"] = auto_name
name = c2.text_input("Output folder (under exports/)", key="export_name",
                     help="A plain folder name; each candidate goes to exports/<name>/candidate-<id>-<format>.")
force = c2.checkbox("Overwrite existing exports", key="export_force")

targets: dict[int, Path] = {}
try:
    exports = ws.inside("exports")
    folder = ws.inside("exports", name.strip())
    if exports not in folder.parents:
        raise WorkspaceError(f"{name!r} is not a folder inside {exports}; use a plain name such as {method}-front")
    ids = picked[:1] if fmt == "csv" else picked  # csv writes the whole table once
    targets = {cid: folder if fmt == "csv" else folder / f"candidate-{cid}-{fmt}" for cid in ids}
except WorkspaceError as exc:
    st.error(f"{exc}. Choose a folder name without '..' or '/' at the start: exports stay inside "
             f"{ws.root / 'exports'}.")
if targets:
    st.caption("Will write: " + ", ".join(f"`{p.relative_to(ws.root)}`" for p in targets.values()))
elif not picked:
    st.info("Pick at least one candidate.")

if st.button("Export", type="primary", key="export_go", disabled=not targets):
    written, failed = [], []
    bar = st.progress(0.0, text="starting")
    for k, (cid, out) in enumerate(targets.items()):
        bar.progress(k / len(targets), text=f"candidate {cid}: {fmt} ({k + 1}/{len(targets)})")
        if out.exists() and not force:
            failed.append(f"{out} already exists: tick 'Overwrite existing exports' to replace it, or choose "
                          "another output folder.")
            continue
        try:
            written.append(export_candidate(ws, cid, fmt, out, force=force))
        except (ValueError, ModelLoadError) as exc:  # ExportError, VectorError, WorkspaceError, bad data
            failed.append(f"candidate {cid}: {exc}")
    bar.progress(1.0, text=f"{len(written)} written, {len(failed)} failed")
    st.session_state["export_written"] = [str(p) for p in written]
    st.session_state["export_failed"] = failed

for p in st.session_state.get("export_written", []):
    st.success(f"Written: {p}")
for msg in st.session_state.get("export_failed", []):
    st.error(msg)

# ---- Candidate table ----
st.subheader("Candidates of this method")
cols = ["id", "method", "source"] + [f"w_{v}" for v in values if f"w_{v}" in shown] + \
       [f"raw_{v}" for v in values] + [f"z_{v}" for v in values] + ["rank", "on_front", "finite"]
st.dataframe(shown[[c for c in cols if c in shown]], width="stretch", hide_index=True)
st.download_button("Download all candidates (CSV)", table.drop(columns=["key"], errors="ignore").to_csv(index=False),
                   file_name=f"{ws.root.name}-candidates.csv", mime="text/csv", key="export_csv_download",
                   help="Every stored candidate of every method, with weights, raw and z-scored rewards and ranks.")
