"""The candidate table of a workspace, loaded from its store: which comparison row each candidate belongs to,
its rewards z-scored against the base model (`table.CandidateTable`), several workspaces' tables as one
comparison, and pairwise-judge verdicts against the base model. The metrics over a table are in `metrics`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .judges import get_judge, judge_key, verdict_of
from .store import SAMPLED_EVALUATION, prompts_hash
from .table import BASE_METHOD, CandidateTable, is_base, methods_present, weight_column
from .kinds import ComparedMethod
from .workspace import Workspace, WorkspaceError


def load_table(ws: Workspace, methods: list[str] | None = None,
               prompts: Sequence[str] | None = None) -> CandidateTable:
    """One row per (compared method, stored candidate), plus the base model (`CandidateTable`: weights, raw means,
    z-scores, `rank` and `on_front` within its method, `finite`).

    `method` is the comparison row (Workspace.compared_methods) the candidate belongs to by content (its
    vectors and weights), so one candidate can be a point of several methods (an `mva-no-hsic` grid point on
    the simplex is also a `soup` point); `generated_by` is the method that generated it. A candidate whose
    vectors no method reads any more (retrained or deleted) stays, under the name it was generated with.
    For `each` methods (one model per preference) the weights are the preference the vector was trained for.
    Only candidates generated on `prompts` (default workspace.json's prompt set) are listed, and the base model
    on those prompts is their z-score reference: rewards on different prompt sets are not comparable. The
    candidates of a sampled evaluation (`store.SAMPLED_EVALUATION`) are left out: CRD reads them as samples.
    """
    names = tuple(ws.value_names)
    cand = ws.store.candidates()
    if cand.empty:
        return CandidateTable(cand, names)
    cand = cand[cand["prompts_hash"] == prompts_hash(ws.prompts() if prompts is None else prompts)]
    cand = cand[cand["source"] != SAMPLED_EVALUATION]  # CRD's samples of greedy candidates, not front points
    if cand.empty:
        return CandidateTable(cand.reset_index(drop=True), names)
    table = CandidateTable(_by_compared_method(ws, cand), names)
    if methods is not None:
        table = table.for_methods(methods)
    base_id = table.base_id()
    base_rows = ws.store.responses([base_id]) if base_id is not None else pd.DataFrame()
    nan = pd.Series(np.nan, index=table.frame.index)
    raw = {v.name: table.frame.get(f"s_{v.scorer}", nan).astype(float).to_numpy() for v in ws.manifest.values}
    base = {v.name: base_rows[v.scorer].to_numpy(dtype=float) for v in ws.manifest.values if v.scorer in base_rows}
    return CandidateTable.build(table.frame, names, raw, base)


def candidate_table(ws: Workspace, methods: list[str] | None = None,
                    prompts: Sequence[str] | None = None) -> pd.DataFrame:
    """`load_table(...).frame`: the candidate table as the DataFrame scripts and pandas read (`results --csv`)."""
    return load_table(ws, methods, prompts).frame


def _by_compared_method(ws: Workspace, cand: pd.DataFrame) -> pd.DataFrame:
    rows = ws.compared_methods()
    keys = [(tuple(json.loads(h)), tuple(w), d) for h, w, d in zip(cand["vector_hashes"], cand["weights"],
                                                                   cand["decoding"])]
    parts, claimed = [], np.zeros(len(cand), dtype=bool)
    for m in rows:
        mask = np.array([m.contains(h, w, d) for h, w, d in keys], dtype=bool)  # d: a decode-time one is mod's
        if mask.any():
            part = cand[mask].assign(method=m.name)
            # a conditioned policy's p in its prompt, one model per preference's trained preference
            shown = m.kind.value_weights(m, [json.loads(h) for h in part["vector_hashes"]], list(part["preference"]),
                                         len(ws.value_names))
            if shown is not None:
                for i, v in enumerate(ws.value_names):
                    part[weight_column(v)] = [w[i] for w in shown]
            parts.append(part)
            claimed |= mask
    stale = cand[~claimed]
    stale = stale.assign(method=[m if is_base(m) else f"{m} (old vectors)" for m in stale["method"]])
    out = pd.concat([stale, *parts], ignore_index=True)
    out["generated_by"] = out["id"].map(dict(zip(cand["id"], cand["method"])))
    # weights named after vectors (one model per preference) are not value weights: keep only w_<value>
    keep = {weight_column(v) for v in ws.value_names}
    return out.drop(columns=[c for c in out.columns if c.startswith(weight_column("")) and c not in keep])


def judge_against_base(ws: Workspace, candidate_ids: Sequence[int], base_id: int, judge: str) -> pd.DataFrame:
    """Each candidate's responses judged against the base model's on the same prompts by a pairwise LLM judge
    (`judges`, spec `judge:hf:MODEL`; both orders averaged). Columns: id, `judge_win` (share of prompts the judge
    prefers the candidate's response, ties half), `judge_preference` (mean P(candidate ≻ base)), `prompts`. A
    sampled candidate is judged by its first sample per prompt (the response the Responses page shows).

    Verdicts are stored per prompt (`Store.add_judge_verdicts`) under the judge's content key (`judges.judge_key`:
    the spec with the fingerprint of its model's files), and a rerun answers from the store without loading the
    judge (`from_store`) while those files are unchanged; a read-only store is judged anew each time."""
    base = ws.store.responses([int(base_id)]).sort_values("prompt_idx")
    key = judge_key(judge) or get_judge(judge).key  # None: a hub id not on this machine yet: loading fetches it
    rows = []
    for cid in candidate_ids:
        cand = ws.store.responses([int(cid)]).sort_values("prompt_idx")
        if cand["prompt"].tolist() != base["prompt"].tolist():
            raise WorkspaceError(f"candidate {cid} and the base model (candidate {base_id}) were not evaluated on the "
                                 "same prompts; judge candidates of one prompt set")
        preference = ws.store.judge_verdicts(key, int(cid), int(base_id))
        stored = len(preference) == len(cand)
        if not stored:
            model = get_judge(judge)
            preference = model.prefer(cand["prompt"].tolist(), cand["response"].tolist(), base["response"].tolist())
            if not ws.store.read_only:
                # the key of the files just read (they are on this machine now, even a hub id's)
                ws.store.add_judge_verdicts(judge_key(judge) or model.key, int(cid), int(base_id), preference)
        verdict = verdict_of(preference)
        rows.append({"id": int(cid), "judge_win": verdict.win_rate, "judge_preference": verdict.mean_preference,
                     "prompts": len(cand), "from_store": stored})
    return pd.DataFrame(rows, columns=["id", "judge_win", "judge_preference", "prompts", "from_store"])


def single_vector_points(table: pd.DataFrame, method: str, value_names: Sequence[str]) -> pd.DataFrame:
    """Each value's vector alone at weight 1 (paper Fig.5): where one vector takes the model on its own.

    The finite candidates of `method` whose weights are one-hot (one weight exactly 1, the others 0); for a value
    without one, the finite candidates of the workspace's `dpo-<value>` row. The rows of `table` with a `label`
    column: the value name for `method`'s own candidates, the row's method name (`dpo-<value>`) for the others.
    """
    n = len(value_names)
    unit = [0.0] * (n - 1) + [1.0]
    cands = table[(table["method"] == method) & table["finite"]]
    # a bool array: an empty object Series would index columns, not rows
    onehot = cands[np.array([len(w) == n and sorted(w) == unit for w in cands["weights"]], dtype=bool)]
    onehot = onehot.assign(label=[value_names[int(np.argmax(w))] for w in onehot["weights"]])
    missing = [v for v in value_names if v not in set(onehot["label"])]
    dpo = table[table["method"].isin([f"dpo-{v}" for v in missing]) & table["finite"]]
    return pd.concat([onehot, dpo.assign(label=dpo["method"])], ignore_index=True)


@dataclass
class MergedTables:
    """Several workspaces' candidate tables as one comparison (the Compare page). With more than one workspace
    every method is renamed `<method> @ <workspace folder>` (`… (k)` where two folders share a name); z-scores
    stay per workspace, each against its own base model."""

    table: pd.DataFrame  # every workspace's rows, `method` renamed
    methods: dict[str, ComparedMethod]  # renamed comparison row -> its method, workspace by workspace
    base_methods: list[str]  # the base model's (renamed) method name in each workspace

    def present(self) -> list[str]:
        """The methods with candidates: comparison rows in workspace order first, then stale vectors' by name."""
        return methods_present(self.table, list(self.methods), self.base_methods)

    def bases(self) -> pd.DataFrame:
        """Each workspace's base model rows (their `method` names tell the workspaces apart)."""
        return self.table[self.table["method"].isin(self.base_methods)]

    def base_label(self, name: str) -> str:
        """How a chart names one workspace's base model: "base model", with its workspace suffix if any."""
        return name.replace(BASE_METHOD, "base model", 1)

    def compared(self, chosen: Sequence[str]) -> pd.DataFrame:
        """The rows of the `chosen` methods plus every base model under BASE_METHOD: the base models join the
        comparison's reference point (DESIGN "Metrics": minimum over all candidates) but are not a method."""
        shown = self.table[self.table["method"].isin(chosen)]
        return pd.concat([shown, self.bases().assign(method=BASE_METHOD)], ignore_index=True)


def merge_workspace_tables(tables: Sequence[tuple[Workspace, pd.DataFrame]]) -> MergedTables:
    """One comparison over several workspaces' candidate tables (`candidate_table` of each; the current
    workspace first). A workspace listed twice (the same folder resolved) counts once."""
    unique: dict[Path, tuple[Workspace, pd.DataFrame]] = {}
    for ws, table in tables:
        unique.setdefault(ws.root.resolve(), (ws, table))
    loaded = list(unique.values())
    names = [ws.root.name for ws, _ in loaded]
    suffixes = [""] if len(loaded) == 1 else [f" @ {n}" if names.count(n) == 1 else f" @ {n} ({i + 1})"
                                              for i, n in enumerate(names)]
    methods: dict[str, ComparedMethod] = {}
    parts = []
    for suffix, (ws, table) in zip(suffixes, loaded):
        methods.update({m.name + suffix: m for m in ws.compared_methods()})
        parts.append(table.assign(method=table["method"] + suffix) if suffix and not table.empty else table)
    return MergedTables(pd.concat(parts, ignore_index=True), methods, [BASE_METHOD + s for s in suffixes])
