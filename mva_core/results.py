"""The tables pages and the CLI show: candidates with raw and z-scored rewards, ranks, fronts, hypervolume.

Rewards are z-normalised per value against the base model's responses on the same prompts (DESIGN
"Metrics"); raw means stay in the table. One reference point is shared by every method compared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import pareto
from .atomic import ExportError, atomic_dir
from .bootstrap import (BootstrapComparison, Interval, MethodScores, bootstrap_compare, percentile_interval,
                        resample_indices, z_means)
from .export import FORMATS, export_card, export_merged, export_mergekit, export_peft
from .judges import get_judge, judge_key, verdict_of
from .kinds import CONDITIONED
from .models import load_base
from .pareto import is_finite
from .scorers import ScoreNormaliser
from .store import prompts_hash
from .sweep import BASE_METHOD
from .vectors import META_FILE, load_value_vector
from .workspace import ComparedMethod, Workspace, WorkspaceError


def candidate_table(ws: Workspace, methods: list[str] | None = None,
                    prompts: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (compared method, stored candidate), plus the base model: weights `w_<value>`, raw means
    `raw_<value>`, z-scores `z_<value>`, `rank` and `on_front` within its method, `finite`.

    `method` is the comparison row (Workspace.compared_methods) the candidate belongs to by content (its
    vectors and weights), so one candidate can be a point of several methods (an `mva-no-hsic` grid point on
    the simplex is also a `soup` point); `generated_by` is the method that generated it. A candidate whose
    vectors no method reads any more (retrained or deleted) stays, under the name it was generated with.
    For `each` methods (one model per preference) `w_<value>` is the preference the vector was trained for.
    Only candidates generated on `prompts` (default workspace.json's prompt set) are listed, and the base model
    on those prompts is their z-score reference: rewards on different prompt sets are not comparable.
    """
    cand = ws.store.candidates()
    if cand.empty:
        return cand
    cand = cand[cand["prompts_hash"] == prompts_hash(ws.prompts() if prompts is None else prompts)]
    if cand.empty:
        return cand.reset_index(drop=True)
    cand = _by_compared_method(ws, cand)
    if methods is not None:
        cand = cand[cand["method"].isin([*methods, BASE_METHOD])]
    values = ws.manifest.values
    base_ids = cand.loc[cand["method"] == BASE_METHOD, "id"].tolist()
    base_rows = ws.store.responses(base_ids[-1:]) if base_ids else pd.DataFrame()
    cand = cand.copy()
    for v in values:
        raw = cand.get(f"s_{v.scorer}", pd.Series(np.nan, index=cand.index)).astype(float)
        cand[f"raw_{v.name}"] = raw
        if v.scorer in base_rows:
            cand[f"z_{v.name}"] = ScoreNormaliser().fit(base_rows[v.scorer].to_numpy(dtype=float)).transform(raw.to_numpy())
        else:  # no base model scored yet: show raw values rather than nothing
            cand[f"z_{v.name}"] = raw
    z = cand[[f"z_{v.name}" for v in values]].to_numpy(dtype=float)
    cand["finite"] = np.isfinite(z).all(axis=1)
    cand["rank"] = np.nan
    cand["on_front"] = False
    for method, idx in cand.groupby("method").groups.items():
        rows = cand.index.get_indexer(idx)
        rank = pareto.non_dominated_rank(z[rows])
        cand.loc[idx, "rank"] = rank
        cand.loc[idx, "on_front"] = rank == 0
    return cand.reset_index(drop=True)


def _by_compared_method(ws: Workspace, cand: pd.DataFrame) -> pd.DataFrame:
    rows = ws.compared_methods()
    keys = [(tuple(json.loads(h)), tuple(w)) for h, w in zip(cand["vector_hashes"], cand["weights"])]
    preference = {}
    for m in rows:
        if m.kind.model_per_vector:  # one model per preference: the preference it was trained for
            for d, h in zip(m.vector_dirs, m.vector_hashes):
                meta = d / META_FILE
                pref = json.loads(meta.read_text()).get("preference") if meta.is_file() else None
                if isinstance(pref, list) and len(pref) == len(ws.value_names):
                    preference[h] = pref
    parts, claimed = [], np.zeros(len(cand), dtype=bool)
    for m in rows:
        mask = np.array([m.contains(h, w) for h, w in keys], dtype=bool)
        if mask.any():
            part = cand[mask].assign(method=m.name)
            if m.kind.conditioned:  # the preference p its prompt carried
                for i, v in enumerate(ws.value_names):
                    part[f"w_{v}"] = [p[i] if isinstance(p, list) and len(p) == len(ws.value_names) else np.nan
                                      for p in part["preference"]]
            if m.kind.model_per_vector:
                for i, v in enumerate(ws.value_names):
                    part[f"w_{v}"] = [preference.get(json.loads(h)[0], [np.nan] * len(ws.value_names))[i]
                                      for h in part["vector_hashes"]]
            parts.append(part)
            claimed |= mask
    stale = cand[~claimed]
    stale = stale.assign(method=[m if m == BASE_METHOD else f"{m} (old vectors)" for m in stale["method"]])
    out = pd.concat([stale, *parts], ignore_index=True)
    out["generated_by"] = out["id"].map(dict(zip(cand["id"], cand["method"])))
    # weights named after vectors (one model per preference) are not value weights: keep only w_<value>
    keep = {f"w_{v}" for v in ws.value_names}
    return out.drop(columns=[c for c in out.columns if c.startswith("w_") and c not in keep])


@dataclass
class MethodSummary:
    method: str
    candidates: int
    front_size: int
    hypervolume: float
    excluded: int  # candidates with a non-finite score


def summarise(table: pd.DataFrame, value_names: list[str], ref: np.ndarray | None = None) -> tuple[list[MethodSummary], np.ndarray]:
    """Per-method hypervolume with ONE reference point (default: per-value minimum over all candidates
    of the comparison, base included). Returns the summaries and the reference point used."""
    cols = [f"z_{v}" for v in value_names]
    F = table[cols].to_numpy(dtype=float)
    finite = pareto.finite_rows(F)
    if ref is None:
        ref = pareto.reference_point(F[finite]) if finite.any() else np.zeros(len(cols))
    out = []
    for method, grp in table.groupby("method", sort=True):
        if method == BASE_METHOD:
            continue
        Fm = grp[cols].to_numpy(dtype=float)
        res = pareto.analyse(Fm, ref=ref)
        out.append(MethodSummary(method, len(grp), len(res.pareto), res.hypervolume, len(res.excluded)))
    return out, np.asarray(ref, dtype=float)


def compare_table(table: pd.DataFrame, value_names: list[str], ref: np.ndarray | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The Compare page's table: per method its candidates, front size, hypervolume against ONE shared
    reference point (DESIGN "Metrics"; default per-value minimum over all compared candidates), MIP over the
    evaluation preference vectors (MI-EPO; the front candidate maximising p·z is chosen for each p), and each
    value's best z-score (paper Fig.4). Returns the table and the reference point used."""
    summaries, ref = summarise(table, value_names, ref)
    cols = [f"z_{v}" for v in value_names]
    P = pareto.preference_vectors(len(value_names)) if len(value_names) in (2, 3) else None
    rows = []
    for s in summaries:
        grp = table[table["method"] == s.method]
        F = grp[cols].to_numpy(dtype=float)
        finite = np.isfinite(F).all(axis=1)
        if P is None or not finite.any():
            mip = np.nan
        elif _is_conditioned(grp):  # s(p) = the policy run with p in its prompt
            W = grp[[f"w_{v}" for v in value_names]].to_numpy(dtype=float)
            mip = pareto.mip_conditioned(P, W[finite], F[finite])
        else:
            mip = pareto.mip(F[finite], P)
        rows.append({"method": s.method, "candidates": s.candidates, "front size": s.front_size,
                     "hypervolume": s.hypervolume, "MIP": mip, "non-finite": s.excluded})
    best = best_per_value(table, value_names).pivot(index="method", columns="value", values="z")
    out = pd.DataFrame(rows)
    for v in value_names:
        out[f"best {v}"] = out["method"].map(best[v]) if len(out) else []
    return out, ref


def _is_conditioned(group: pd.DataFrame) -> bool:
    """Are these a conditioned policy's candidates (each carries the preference p of its prompt)?"""
    return "preference" in group and bool(group["preference"].map(CONDITIONED.is_candidate).all())


def prompt_rewards(ws: Workspace, candidate_ids: Sequence[int]) -> np.ndarray:
    """(K, P, V) raw reward of each candidate on each of its prompts for each value's scorer (NaN where missing)."""
    scorers = [v.scorer for v in ws.manifest.values]
    rows = ws.store.responses([int(i) for i in candidate_ids])
    out = []
    for cid in candidate_ids:
        part = rows[rows["candidate_id"] == int(cid)].sort_values("prompt_idx")
        out.append(np.stack([part[s].to_numpy(dtype=float) if s in part else np.full(len(part), np.nan)
                             for s in scorers], axis=1))  # (P, V)
    return np.stack(out) if out else np.zeros((0, 0, len(scorers)))


def win_rates(ws: Workspace, candidate_ids: Sequence[int], base_id: int) -> pd.DataFrame:
    """Per candidate and value, the share of prompts on which the candidate's reward beats the base model's on the
    same prompt, ties counted half (prompts where either reward is not finite are left out). Columns: id, then
    `win_<value>` in [0, 1] (NaN when no prompt is comparable)."""
    R, base = prompt_rewards(ws, candidate_ids), prompt_rewards(ws, [base_id])[0]  # (K, P, V), (P, V)
    if R.shape[1:] != base.shape:
        raise WorkspaceError(f"candidates {list(candidate_ids)} and the base model (candidate {base_id}) were not "
                             "evaluated on the same prompts; compare candidates of one prompt set")
    ok = np.isfinite(R) & np.isfinite(base)[None]
    score = np.where(R > base, 1.0, np.where(R == base, 0.5, 0.0))
    with np.errstate(invalid="ignore"):
        share = np.where(ok, score, 0.0).sum(axis=1) / ok.sum(axis=1)  # (K, V)
    return pd.DataFrame({"id": [int(i) for i in candidate_ids],
                         **{f"win_{v}": share[:, j] for j, v in enumerate(ws.value_names)}})


CRD_WHY = ("CRD (MI-EPO) is the mean det Cov of the rewards of sampled responses per preference; these "
           "candidates were decoded greedily (one response per prompt), so there are no samples to measure it; "
           "set decoding do_sample=true (and num_samples) in workspace.json and sweep again")


def preference_choice(group: pd.DataFrame, value_names: Sequence[str], p: np.ndarray) -> int | None:
    """The id of the candidate of one method that preference `p` is scored with (MI-EPO MIP's s(p), DESIGN
    "Metrics"): for a conditioned policy the run with p in its prompt, otherwise the front candidate maximising p·z
    (`pareto.best_for_preference`, the user's choice rule). None when no candidate qualifies."""
    F = group[[f"z_{v}" for v in value_names]].to_numpy(dtype=float)
    finite = np.isfinite(F).all(axis=1)
    if not finite.any():
        return None
    ids = group["id"].to_numpy()[finite]
    if _is_conditioned(group):
        W = group[[f"w_{v}" for v in value_names]].to_numpy(dtype=float)[finite]
        hits = np.flatnonzero(np.abs(W - np.asarray(p, dtype=float)).max(axis=1) < 1e-9)  # as pareto.mip_conditioned
        return int(ids[hits[0]]) if len(hits) else None
    return int(ids[pareto.best_for_preference(F[finite], p)])


def sample_rewards(ws: Workspace, candidate_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """(P, S, V) raw reward of each sampled response (prompt, sample, value's scorer) of each candidate decoded by
    sampling; candidates decoded greedily are left out. NaN where a sample is not scored."""
    scorers = [v.scorer for v in ws.manifest.values]
    rows = ws.store.samples([int(i) for i in candidate_ids])
    out = {}
    for cid, part in rows.groupby("candidate_id", sort=True):
        n_prompts, n_samples = int(part["prompt_idx"].max()) + 1, int(part["sample_idx"].max()) + 1
        R = np.full((n_prompts, n_samples, len(scorers)), np.nan)
        for v, s in enumerate(scorers):
            if s in part:
                R[part["prompt_idx"].to_numpy(), part["sample_idx"].to_numpy(), v] = part[s].to_numpy(dtype=float)
        out[int(cid)] = R
    return out


@dataclass
class MethodCRD:
    """A method's CRD, or why it has none (`value` None)."""

    value: float | None
    why: str = ""
    samples_per_preference: int = 0  # reward vectors in each covariance: prompts × samples per prompt
    interval: Interval | None = None  # 95 % percentile bootstrap over the prompts (`crd_interval`)


def crd_by_method(ws: Workspace, table: pd.DataFrame, methods: Sequence[str]) -> dict[str, MethodCRD]:
    """CRD (MI-EPO; DESIGN "Metrics") of each method: the mean over the evaluation preference vectors p of
    det Cov of the rewards of the responses sampled for p (`pareto.crd`).

    Which samples enter Cov for p: every sampled response of the candidate p is scored with (`preference_choice`:
    the run with p for a conditioned policy, else the front candidate maximising p·z: the same s(p) as MIP), on
    every evaluation prompt — P prompts × S samples per prompt pooled, so the spread across prompts counts as well
    as the spread between samples of one prompt — each a reward vector in z units (against the base model's
    per-prompt mean rewards, as every z-score here). Pooling over the test prompts is our reading of MI-EPO (Xie et
    al. 2026, arXiv:2607.01392) "det Cov of the rewards of sampled responses"; it needs sampled decoding, so
    greedy candidates give None with the reason. Computed once here for the Compare page, `compare --json` and
    `demo report`."""
    names = list(methods)
    P = pareto.preference_vectors(len(ws.value_names)) if len(ws.value_names) in (2, 3) else None
    base_ids = table.loc[table["method"] == BASE_METHOD, "id"].tolist()
    if P is None:
        return {m: MethodCRD(None, f"no fixed evaluation preferences for {len(ws.value_names)} values (MI-EPO: 2 or 3)")
                for m in names}
    if not base_ids:
        return {m: MethodCRD(None, "no base-model candidate on these prompts: rewards cannot be z-scored") for m in names}
    base_rewards = prompt_rewards(ws, base_ids[-1:])[0]  # (P, V) per-prompt rewards of the base
    normaliser = ScoreNormaliser().fit(base_rewards)
    out = {}
    for name in names:
        grp = table[table["method"] == name]
        chosen = [preference_choice(grp, ws.value_names, p) for p in P]
        samples = sample_rewards(ws, sorted({c for c in chosen if c is not None}))
        if any(c is not None and c not in samples for c in chosen):
            out[name] = MethodCRD(None, CRD_WHY)
            continue
        if any(c is None for c in chosen):
            out[name] = MethodCRD(None, "some evaluation preference has no finite candidate to score it with "
                                        "(a conditioned policy not run with every p, or non-finite scores)")
            continue
        per_p = [normaliser.transform(samples[c].reshape(-1, len(ws.value_names))) for c in chosen]  # (P·S, V) each
        if not all(np.isfinite(R).all() for R in per_p):
            out[name] = MethodCRD(None, "a sampled response of a chosen candidate has a non-finite score")
            continue
        estimate = pareto.crd(per_p)
        out[name] = MethodCRD(estimate, "", int(per_p[0].shape[0]),
                              crd_interval(ws, grp, P, chosen, base_rewards, estimate))
    return out


def crd_interval(ws: Workspace, group: pd.DataFrame, preferences: np.ndarray, chosen: Sequence[int],
                 base: np.ndarray, estimate: float, n_resamples: int = 1000, seed: int = 0) -> Interval:
    """95 % percentile interval of a method's CRD over the evaluation prompts, as HV's and MIP's (`bootstrap`):
    each resample draws the prompts with replacement, z-scores against the base model's rewards `base` (P, V) on
    those prompts, chooses each p's candidate again on them (the front candidate maximising p·z; a conditioned
    policy keeps its run with p, `chosen`) and pools the chosen candidates' samples on those prompts. A resample
    whose choice has no samples is left out."""
    zc = [f"z_{v}" for v in ws.value_names]
    finite = group[np.isfinite(group[zc].to_numpy(dtype=float)).all(axis=1)]
    ids = finite["id"].astype(int).to_numpy()
    idx = resample_indices(base.shape[0], n_resamples, seed)  # (B, P)
    if _is_conditioned(group):
        choices = np.tile(np.asarray(chosen, dtype=int), (n_resamples, 1))  # (B, |P|)
    else:
        Z = z_means(prompt_rewards(ws, ids), base, idx)  # (B, K, V)
        choices = np.empty((n_resamples, len(preferences)), dtype=int)
        for b in range(n_resamples):
            front = pareto.front_indices(Z[b])
            if not len(front):
                choices[b] = -1
                continue
            choices[b] = ids[front[np.argmax(Z[b][front] @ preferences.T, axis=0)]]  # first maximum, as s(p)
    samples = sample_rewards(ws, sorted(set(choices[choices >= 0].tolist())))
    values = np.full(n_resamples, np.nan)
    for b in range(n_resamples):
        if (choices[b] < 0).any() or any(c not in samples for c in choices[b]):
            continue
        normaliser = ScoreNormaliser().fit(base[idx[b]])
        per_p = [normaliser.transform(samples[c][idx[b]].reshape(-1, base.shape[1])) for c in choices[b]]
        if all(np.isfinite(R).all() for R in per_p):
            values[b] = pareto.crd(per_p)
    return percentile_interval(values, estimate)


def win_rates_at(ws: Workspace, table: pd.DataFrame, methods: Sequence[str], p: Sequence[float]) -> pd.DataFrame:
    """Per method, its candidate for preference `p` (`preference_choice`: the one MIP scores p with) and that
    candidate's win rate per value against the base model (`win_rates`: share of prompts it beats the base on, ties
    half). Columns: method, id, `w_<value>`, `win_<value>`; a method with no candidate for p has id None, NaN rates."""
    base_ids = table.loc[table["method"] == BASE_METHOD, "id"].tolist()
    if not base_ids:
        raise WorkspaceError(f"{ws.root} has no base-model candidate on these prompts; run a sweep first (it "
                             "evaluates the base model, which win rates are measured against)")
    p = np.asarray(p, dtype=float)
    rows = []
    for name in methods:
        grp = table[table["method"] == name]
        cid = preference_choice(grp, ws.value_names, p)
        row: dict = {"method": name, "id": cid}
        if cid is not None:
            cand = grp[grp["id"] == cid].iloc[0]
            row.update({f"w_{v}": cand.get(f"w_{v}", np.nan) for v in ws.value_names})
            wins = win_rates(ws, [cid], int(base_ids[-1])).iloc[0]
            row.update({f"win_{v}": float(wins[f"win_{v}"]) for v in ws.value_names})
        rows.append(row)
    cols = ["method", "id", *[f"w_{v}" for v in ws.value_names], *[f"win_{v}" for v in ws.value_names]]
    return pd.DataFrame(rows, columns=cols)


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


def compare_with_intervals(ws: Workspace, table: pd.DataFrame, methods: Sequence[str] | None = None,
                           ref: np.ndarray | None = None, n_resamples: int = 1000,
                           seed: int = 0) -> BootstrapComparison:
    """HV and MIP of each method of one workspace with 95 % bootstrap intervals over its evaluation prompts, and
    every pair's paired HV difference (mva_core.bootstrap). The point estimates are `compare_table`'s; the
    reference point defaults to the same shared one."""
    present = methods_present(table, [m.name for m in ws.compared_methods()])
    names = list(methods or present)
    missing = [m for m in names if m not in present]
    if missing:
        raise WorkspaceError(f"methods {missing} have no candidates in {ws.root}; methods with candidates: {present}")
    base_ids = table.loc[table["method"] == BASE_METHOD, "id"].tolist()
    if not base_ids:
        raise WorkspaceError(f"{ws.root} has no base-model candidate on these prompts; run a sweep first (it "
                             "evaluates the base model, the reference of every z-score)")
    if ref is None:
        ref = compare_table(table[table["method"].isin([*names, BASE_METHOD])], ws.value_names)[1]
    scored = []
    for name in names:
        grp = table[table["method"] == name]
        conditioned_on = grp[[f"w_{v}" for v in ws.value_names]].to_numpy(dtype=float) if _is_conditioned(grp) else None
        scored.append(MethodScores(name, prompt_rewards(ws, grp["id"].tolist()), conditioned_on))
    return bootstrap_compare(scored, prompt_rewards(ws, base_ids[-1:])[0], ref=ref, n_resamples=n_resamples, seed=seed)


def comparison_json(result: BootstrapComparison, crd: dict[str, MethodCRD]) -> dict:
    """The `compare --json` document (DESIGN §3): ref, per method hv/mip with intervals, crd (`crd_by_method`; null
    with "crd_why" when not defined), n_prompts; per pair "a|b" the paired HV difference, its interval and the share
    of resamples where a wins."""
    def number(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None

    def crd_of(name: str) -> dict:
        c = crd.get(name, MethodCRD(None, "not computed for this method"))
        return {"crd": c.value, "crd_why": c.why or None,
                **({"crd_samples_per_preference": c.samples_per_preference} if c.value is not None else {}),
                **({"crd_ci": c.interval.as_list()} if c.interval is not None else {})}

    return {
        "ref": [float(x) for x in result.ref], "n_resamples": result.n_resamples, "seed": result.seed,
        "methods": {name: {"hv": number(m.hv.estimate), "hv_ci": [number(x) for x in m.hv.as_list()],
                           "mip": number(m.mip.estimate), "mip_ci": [number(x) for x in m.mip.as_list()],
                           **crd_of(name), "n_prompts": m.n_prompts}
                    for name, m in result.methods.items()},
        "pairs": {f"{a}|{b}": {"hv_diff": number(d.hv_diff.estimate),
                               "hv_diff_ci": [number(x) for x in d.hv_diff.as_list()],
                               "p_a_better": d.p_a_better} for (a, b), d in result.pairs.items()},
    }


def best_per_value(table: pd.DataFrame, value_names: list[str]) -> pd.DataFrame:
    """Each method's highest z-score per value over its finite candidates (paper Fig.4: how far a method can
    push each value, possibly with a different candidate per value). Long form: `method`, `value`, `z`,
    `candidate` (the id reaching it; the lowest id on ties). The base model is not a method and is left out."""
    cols = [f"z_{v}" for v in value_names]
    rows = []
    for method, grp in table[table["method"] != BASE_METHOD].groupby("method", sort=False):
        grp = grp[np.isfinite(grp[cols].to_numpy(dtype=float)).all(axis=1)].sort_values("id")
        for v in value_names:
            if grp.empty:
                rows.append({"method": method, "value": v, "z": np.nan, "candidate": None})
                continue
            z = grp[f"z_{v}"].to_numpy(dtype=float)
            i = int(np.argmax(z))  # first maximum = lowest id
            rows.append({"method": method, "value": v, "z": float(z[i]), "candidate": int(grp["id"].iloc[i])})
    return pd.DataFrame(rows, columns=["method", "value", "z", "candidate"])



def methods_present(table: pd.DataFrame, order: Sequence[str], base_methods: Sequence[str] = (BASE_METHOD,)
                    ) -> list[str]:
    """The methods with candidates in `table`: those named in `order` (the comparison rows) first, in that order,
    then the others (candidates of vectors no method reads any more) sorted by name. Base models are left out."""
    present = set(table["method"]) - set(base_methods) if not table.empty else set()
    return [m for m in order if m in present] + sorted(present - set(order))


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


# ---- Export of a stored candidate ----

def export_candidate(ws: Workspace, candidate_id: int, fmt: str, out: str | Path, force: bool = False,
                     method: str | None = None) -> Path:
    """Export a stored candidate with the same writers as `compose` (plus its scores in card/csv). `method` is the
    comparison row it is exported from (a candidate can be a point of several: an `mva-no-hsic` grid point on
    the simplex is also a `soup` point); the card names it. Default: the first row holding the candidate."""
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r} is unknown; choose one of {list(FORMATS)}")
    # the table of the candidate's own prompt set (its scores are z-scored against the base on those prompts)
    prompts = ws.store.responses([int(candidate_id)]).sort_values("prompt_idx")["prompt"].tolist()
    table = candidate_table(ws, prompts=prompts or None)
    row = table[table["id"] == candidate_id]
    if row.empty:
        raise ExportError(f"candidate {candidate_id} is not in {ws.root}; list them on the Explore page or in mva.sqlite")
    if method is not None:
        if not (row["method"] == method).any():
            raise ExportError(f"candidate {candidate_id} is not a point of method {method!r}; it belongs to "
                              f"{sorted(set(row['method']))}")
        row = row[row["method"] == method]
    row = row.iloc[0]
    scores = {v: {"raw": float(row[f"raw_{v}"]), "z": float(row[f"z_{v}"])} for v in ws.value_names}
    card = {"method": str(row["method"]), "candidate_id": int(candidate_id), "scores": scores,
            "dominance_layer": int(row["rank"]) if is_finite(row["rank"]) else None,  # 0 = on the front
            "on_front": bool(row["on_front"])}
    if fmt == "csv":
        with atomic_dir(out, force) as tmp:
            table.drop(columns=["key"]).to_csv(tmp / "candidates.csv", index=False)
            (tmp / "candidates.json").write_text(table.drop(columns=["key"]).to_json(orient="records", indent=2))
        return Path(out).resolve()
    if row["method"] == BASE_METHOD or not row["weights"]:
        raise ExportError(f"candidate {candidate_id} is the base model itself; nothing to compose")
    base = load_base(ws.manifest.base)
    by_hash = ws.vector_index()
    vectors = []
    for h in json.loads(row["vector_hashes"]):
        if h not in by_hash:
            raise ExportError(f"candidate {candidate_id} was composed from a value vector (hash {h}) that is no longer "
                              f"under {ws.root / 'vectors'} (retrained or deleted); re-run the sweep and export a "
                              "candidate of the current vectors")
        vectors.append(load_value_vector(by_hash[h]))
    preference = row.get("preference")
    if CONDITIONED.is_candidate(preference):  # the model alone is not the candidate: its prompt is part of it
        text = CONDITIONED.conditioning(vectors).text(preference, ws.value_names, ws.manifest.decoding.system_prompt)
        card["conditioning"] = {"preference": dict(zip(ws.value_names, preference)), "system_prompt": text}
    weights = list(row["weights"])
    if fmt == "merged":
        return export_merged(base, vectors, weights, out, force, card)
    if fmt == "card":
        return export_card(base, vectors, weights, out, force, card)
    return {"peft": export_peft, "mergekit": export_mergekit}[fmt](base, vectors, weights, out, force, card)
