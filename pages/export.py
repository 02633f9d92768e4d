"""Export: write chosen candidates (default: a method's Pareto front) as models, adapters, recipes or cards."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import streamlit as st

from mva_core.errors import MVAError
from mva_core.config import ConfigError, check_name
from mva_core.export import FORMATS, estimated_export_bytes, export_candidate
from mva_core.models import DEFAULT_BASE, model_cache_dir
from mva_core.table import raw_column, weight_column, z_column
from mva_core.workspace import WorkspaceError
from pages.choose_confidence import default_export_selection, front_probability
from pages.shared import current_workspace, forget_stale, get_table, pick_method, table_columns, table_version

FORMAT_HELP = {
    "merged": "a full model dir: W + Σ wᵢ·ΔWᵢ in safetensors + tokenizer + model card (checked by reloading it)",
    "peft": "one LoRA adapter equal to Σ wᵢ·θᵢ (ranks concatenated); loads with PeftModel.from_pretrained",
    "mergekit": "a mergekit task_arithmetic recipe (mergekit.yaml) that rebuilds the same model",
    "card": "the model card only (README.md: base, weights, scores, vector hashes)",
    "csv": "the whole candidate table (candidates.csv + candidates.json), once",
}

MAX_ZIP_BYTES = 200 * 1024 ** 2  # zipped in memory for the download button; larger exports are copied by path


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def zip_dirs(dirs: list[Path], root: Path) -> bytes:
    """The written export folders as one zip, paths relative to exports/."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for d in dirs:
            for f in sorted(d.rglob("*")):
                if f.is_file():
                    zf.write(f, f.relative_to(root if root in f.parents else d.parent))
    return buffer.getvalue()


def render() -> None:
    """The Export page: write chosen candidates (default: a method's front) as models or a table."""
    ws = current_workspace()
    if ws is None:
        st.stop()
    values = ws.value_names

    st.title("Export models")
    st.caption("Pick candidates (by default the Pareto front of a method: no other candidate of it scores at least as "
               "well on every value and better on one), a format, and a folder name under the workspace's exports/. "
               "Each candidate is written to a temp dir and renamed into place, so a failed export leaves nothing.")
    table = get_table(str(ws.root), table_version(ws))

    # ---- Candidates ----
    method = pick_method(ws, table, "export_method")
    shown = table[table["method"] == method]
    rows = {int(r["id"]): r for _, r in shown.iterrows()}


    def label(cid: int) -> str:
        r = rows[cid]
        w = ", ".join(f"{x:g}" for x in np.round(r["weights"], 3))
        scores = " · ".join(f"{v} {r[z_column(v)]:+.2f}" for v in values)
        return (f"#{cid} · w = ({w}) · {scores}" + (" · front" if r["on_front"] else "")
                + (f" · P(front) {sure[cid]:.0%}" if np.isfinite(sure.get(cid, np.nan)) else ""))


    pick_key = f"export_pick_{method}"  # one selection per method
    forget_stale(pick_key, rows)
    front = shown[shown["on_front"] & shown["finite"]]
    if pick_key not in st.session_state:  # the points on the front in >= 50 % of prompt resamples (issue 29 item 1)
        st.session_state[pick_key] = default_export_selection(ws, shown)
    sure = dict(zip(shown["id"].astype(int), front_probability(ws, shown)))


    def pick_front() -> None:
        st.session_state[pick_key] = [int(i) for i in front["id"]]


    picked = st.multiselect("Candidates", list(rows), format_func=label, key=pick_key,
                            help="Labelled by weights, z-scores vs the base model and P(front) (the share of 1000 "
                                 "prompt resamples in which the candidate is on its method's front); default: the "
                                 "candidates on the front in at least 50 % of them.")
    st.button(f"Select the whole front ({len(front)})", key="export_pick_front", on_click=pick_front,
              disabled=front.empty)

    def export_sizes(cids: list[int], fmt: str) -> list[int | None]:
        """Bytes of one export of each candidate in `fmt`, counted from the files' headers before writing (once per
        vector set: candidates of one set differ only in their weights)."""
        index = ws.vector_index()
        base_dir = model_cache_dir() / DEFAULT_BASE if ws.manifest.base == DEFAULT_BASE else Path(ws.manifest.base)
        by_set: dict[tuple[str, ...], int | None] = {}
        for cid in cids:
            hashes = tuple(json.loads(rows[cid]["vector_hashes"]))
            if hashes not in by_set:
                by_set[hashes] = estimated_export_bytes(base_dir, [index[h] for h in hashes if h in index], fmt)
        return [by_set[tuple(json.loads(rows[cid]["vector_hashes"]))] for cid in cids]


    # ---- Format and target ----
    c1, c2 = st.columns([1, 2])
    # a decode-time candidate (mod) is n + 1 models mixed per token, not one model: only its table exports
    decode_time = any(m.name == method and m.kind.mixes_at_decoding for m in ws.compared_methods())
    formats = ["csv"] if decode_time else list(FORMATS)
    forget_stale("export_format", formats)
    fmt = c1.selectbox("Format", formats, key="export_format")
    if decode_time:
        c1.caption(f"{method} picks each token from the base's and each value's model together (decode-time): no one "
                   "model to write, so only the candidate table exports.")
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
        folder = ws.inside("exports", check_name(name.strip(), "output folder"))
        if exports not in folder.parents:
            raise WorkspaceError(f"{name!r} is not a folder inside {exports}; use a plain name such as {method}-front")
        ids = picked[:1] if fmt == "csv" else picked  # csv writes the whole table once
        targets = {cid: folder if fmt == "csv" else folder / f"candidate-{cid}-{fmt}" for cid in ids}
    except (WorkspaceError, ConfigError) as exc:
        st.error(f"{exc}. Choose a folder name without '..' or '/' at the start: exports stay inside "
                 f"{ws.root / 'exports'}.")
    if targets:
        st.caption("Will write: " + ", ".join(f"`{p.relative_to(ws.root)}`" for p in targets.values()))
        sizes = export_sizes(list(targets), fmt)
        known = [b for b in sizes if b is not None]
        total = f"≈ {human_bytes(sum(known))}" + ("" if len(known) == len(sizes) else " + the base model's size per "
                                                  "merged export not yet on this disk")
        (st.warning if sum(known) > 2 * 1024 ** 3 else st.caption)(
            f"{len(targets)} × {fmt}: {total} in all" + (f" (≈ {human_bytes(known[0])} each)" if known else ""))
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
                written.append(export_candidate(ws, cid, fmt, out, force=force, method=method))
            except MVAError as exc:  # ExportError, VectorError, WorkspaceError, ModelLoadError, bad data
                failed.append(f"candidate {cid}: {exc}")
        bar.progress(1.0, text=f"{len(written)} written, {len(failed)} failed")
        st.session_state["export_written"] = [str(p) for p in written]
        st.session_state["export_failed"] = failed

    for p in st.session_state.get("export_written", []):
        st.success(f"Written: {p}")
    written_dirs = [Path(p) for p in st.session_state.get("export_written", []) if Path(p).is_dir()]
    if written_dirs:
        size = sum(f.stat().st_size for d in written_dirs for f in d.rglob("*") if f.is_file())
        if size <= MAX_ZIP_BYTES:
            st.download_button(f"Download as zip ({human_bytes(size)})", zip_dirs(written_dirs, ws.root / "exports"),
                               file_name=f"{ws.root.name}-export.zip", mime="application/zip", key="export_zip")
        else:
            st.caption(f"{human_bytes(size)} written: too large for a browser download; copy it from the paths above.")
    for msg in st.session_state.get("export_failed", []):
        st.error(msg)

    # ---- Candidate table ----
    st.subheader("Candidates of this method")
    cols = ["id", "method", "source"] + [weight_column(v) for v in values if weight_column(v) in shown] + \
           [raw_column(v) for v in values] + [z_column(v) for v in values] + ["rank", "on_front", "finite"]
    st.dataframe(shown[[c for c in cols if c in shown]], width="stretch", hide_index=True, column_config=table_columns(values))
    st.download_button("Download all candidates (CSV)", table.drop(columns=["key"], errors="ignore").to_csv(index=False),
                       file_name=f"{ws.root.name}-candidates.csv", mime="text/csv", key="export_csv_download",
                       help="Every stored candidate of every method, with weights, raw and z-scored rewards and ranks.")


if __name__ == "__main__":  # run directly by Streamlit's legacy pages/ mode: go through the app (gate, navigation)
    from app import main

    main()
