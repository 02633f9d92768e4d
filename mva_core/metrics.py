"""The comparison's metrics over a candidate table (DESIGN "Metrics"): hypervolume against ONE shared reference
point, MIP and CRD (MI-EPO), each value's best, win rates against the base model, and their bootstrap intervals.

Every function reads the table through `CandidateTable` (a DataFrame of its layout is accepted with the value
names); per-prompt and per-sample rewards come from the workspace's store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import json

import numpy as np
import pandas as pd

from . import pareto
from .bootstrap import (DIFFERENCE_INTERVAL, PER_METHOD_INTERVAL, BootstrapComparison, Interval, MethodMetrics,
                        MethodScores, bca_intervals, bootstrap_compare, percentile_interval, resample_indices,
                        z_means)
from .kinds import CONDITIONED
from .scorers import ScoreNormaliser
from .store import SAMPLED_EVALUATION
from .table import CandidateTable, methods_present, weight_column
from .workspace import Workspace, WorkspaceError

Table = CandidateTable | pd.DataFrame  # a DataFrame of the table's layout is read with the value names given


# ---- Hypervolume and MIP ----

def reference_point(table: Table, value_names: Sequence[str] | None = None,
                    ref: np.ndarray | Sequence[float] | None = None) -> np.ndarray:
    """THE reference point of a comparison, shared by every method compared (DESIGN "Metrics"): `ref` when given,
    else the per-value minimum z over every finite row of `table` (all compared candidates and the base model;
    `pareto.reference_point`), zeros when no row is finite."""
    t = CandidateTable.of(table, value_names)
    if ref is not None:
        return np.asarray(ref, dtype=float)
    F = t.z()
    finite = pareto.finite_rows(F)
    return np.asarray(pareto.reference_point(F[finite]) if finite.any() else np.zeros(len(t.value_names)), dtype=float)


@dataclass
class MethodSummary:
    method: str
    candidates: int
    front_size: int
    hypervolume: float
    excluded: int  # candidates with a non-finite score


def summarise(table: Table, value_names: Sequence[str] | None = None,
              ref: np.ndarray | None = None) -> tuple[list[MethodSummary], np.ndarray]:
    """Per-method hypervolume with ONE reference point (`reference_point`: default per-value minimum over all
    candidates of the comparison, base included). Returns the summaries and the reference point used."""
    t = CandidateTable.of(table, value_names)
    ref = reference_point(t, ref=ref)
    out = []
    for method in t.methods(sort=True):
        rows = t.for_method(method)
        res = pareto.analyse(rows.z(), ref=ref)
        out.append(MethodSummary(method, len(rows), len(res.pareto), res.hypervolume, len(res.excluded)))
    return out, ref


def compare_table(table: Table, value_names: Sequence[str] | None = None,
                  ref: np.ndarray | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The Compare page's table: per method its candidates, front size, hypervolume against ONE shared
    reference point (DESIGN "Metrics"; default per-value minimum over all compared candidates), MIP over the
    evaluation preference vectors (MI-EPO; the front candidate maximising p·z is chosen for each p), and each
    value's best z-score (paper Fig.4). Returns the table and the reference point used."""
    t = CandidateTable.of(table, value_names)
    summaries, ref = summarise(t, ref=ref)
    n = len(t.value_names)
    P = pareto.preference_vectors(n) if n in (2, 3) else None
    rows = []
    for s in summaries:
        grp = t.for_method(s.method)
        F = grp.z()
        finite = np.isfinite(F).all(axis=1)
        if P is None or not finite.any():
            mip = np.nan
        elif is_conditioned(grp):  # s(p) = the policy run with p in its prompt
            mip = pareto.mip_conditioned(P, grp.weights()[finite], F[finite])
        else:
            mip = pareto.mip(F[finite], P)
        rows.append({"method": s.method, "candidates": s.candidates, "front size": s.front_size,
                     "hypervolume": s.hypervolume, "MIP": mip, "non-finite": s.excluded})
    best = best_per_value(t).pivot(index="method", columns="value", values="z")
    out = pd.DataFrame(rows)
    for v in t.value_names:
        out[f"best {v}"] = out["method"].map(best[v]) if len(out) else []
    return out, ref


def best_per_value(table: Table, value_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Each method's highest z-score per value over its finite candidates (paper Fig.4: how far a method can
    push each value, possibly with a different candidate per value). Long form: `method`, `value`, `z`,
    `candidate` (the id reaching it; the lowest id on ties). The base model is not a method and is left out."""
    t = CandidateTable.of(table, value_names)
    rows = []
    for method in t.methods():
        grp = t.for_method(method)
        grp = CandidateTable(grp.frame[grp.finite()].sort_values("id"), t.value_names)
        Z, ids = grp.z(), grp.ids()
        for j, v in enumerate(t.value_names):
            if grp.empty:
                rows.append({"method": method, "value": v, "z": np.nan, "candidate": None})
                continue
            i = int(np.argmax(Z[:, j]))  # first maximum = lowest id
            rows.append({"method": method, "value": v, "z": float(Z[i, j]), "candidate": int(ids[i])})
    return pd.DataFrame(rows, columns=["method", "value", "z", "candidate"])


def is_conditioned(rows: Table) -> bool:
    """Are these a conditioned policy's candidates (each carries the preference p of its prompt)?"""
    frame = rows.frame if isinstance(rows, CandidateTable) else rows
    return "preference" in frame and bool(frame["preference"].map(CONDITIONED.is_candidate).all())


def preference_choice(group: Table, value_names: Sequence[str] | None, p: np.ndarray) -> int | None:
    """The id of the candidate of one method that preference `p` is scored with (MI-EPO MIP's s(p), DESIGN
    "Metrics"): for a conditioned policy the run with p in its prompt, otherwise the front candidate maximising p·z
    (`pareto.best_for_preference`, the user's choice rule). None when no candidate qualifies."""
    t = CandidateTable.of(group, value_names)
    F = t.z()
    finite = np.isfinite(F).all(axis=1)
    if not finite.any():
        return None
    ids = t.ids()[finite]
    if is_conditioned(t):
        W = t.weights()[finite]
        hits = np.flatnonzero(np.abs(W - np.asarray(p, dtype=float)).max(axis=1) < 1e-9)  # as pareto.mip_conditioned
        return int(ids[hits[0]]) if len(hits) else None
    return int(ids[pareto.best_for_preference(F[finite], p)])


# ---- Rewards per prompt and per sample (from the store) ----

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


def sampled_twins(ws: Workspace, candidate_ids: Sequence[int]) -> dict[int, int]:
    """candidate id -> the id of its sampled evaluation (`store.SAMPLED_EVALUATION`: the same base, vectors,
    weights, preference p and prompts, decoded by sampling; the latest if several), for the ids that have one."""
    cand = ws.store.candidates()
    if cand.empty or not (cand["source"] == SAMPLED_EVALUATION).any():
        return {}

    def identity(row: Any) -> tuple:
        return (row.base_fingerprint, row.vector_hashes, tuple(round(float(w), 9) for w in row.weights),
                row.prompts_hash, None if row.preference is None else tuple(round(float(x), 9) for x in row.preference))

    twins = {identity(r): int(r.id) for r in cand[cand["source"] == SAMPLED_EVALUATION].itertuples()}  # latest last
    wanted = {int(i) for i in candidate_ids}
    return {int(r.id): twins[identity(r)] for r in cand[cand["id"].isin(wanted)].itertuples()
            if r.source != SAMPLED_EVALUATION and identity(r) in twins}


def sample_rewards(ws: Workspace, candidate_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """(P, S, V) raw reward of each sampled response (prompt, sample, value's scorer) of each candidate decoded by
    sampling, or of its sampled evaluation (`sampled_twins`: a greedy candidate's samples), keyed by the ids
    given; candidates with neither are left out. NaN where a sample is not scored."""
    scorers = [v.scorer for v in ws.manifest.values]
    twins = sampled_twins(ws, candidate_ids)
    own = ws.store.samples([int(i) for i in candidate_ids])
    lacking = [int(i) for i in candidate_ids if int(i) not in set(own["candidate_id"].astype(int)) and int(i) in twins]
    via = ws.store.samples(sorted({twins[i] for i in lacking}))
    back = {twins[i]: i for i in lacking}
    parts = [part for part in (own, via.assign(candidate_id=via["candidate_id"].map(back))) if len(part)]
    rows = pd.concat(parts, ignore_index=True) if len(parts) > 1 else (parts[0] if parts else own)
    out = {}
    for cid, part in rows.groupby("candidate_id", sort=True):
        n_prompts, n_samples = int(part["prompt_idx"].max()) + 1, int(part["sample_idx"].max()) + 1
        R = np.full((n_prompts, n_samples, len(scorers)), np.nan)
        for v, s in enumerate(scorers):
            if s in part:
                R[part["prompt_idx"].to_numpy(), part["sample_idx"].to_numpy(), v] = part[s].to_numpy(dtype=float)
        out[int(cid)] = R
    return out


# ---- Win rates against the base model ----

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


def win_rates_at(ws: Workspace, table: Table, methods: Sequence[str], p: Sequence[float]) -> pd.DataFrame:
    """Per method, its candidate for preference `p` (`preference_choice`: the one MIP scores p with) and that
    candidate's win rate per value against the base model (`win_rates`: share of prompts it beats the base on, ties
    half). Columns: method, id, `w_<value>`, `win_<value>`; a method with no candidate for p has id None, NaN rates."""
    t = CandidateTable.of(table, ws.value_names)
    base_id = t.base_id()
    if base_id is None:
        raise WorkspaceError(f"{ws.root} has no base-model candidate on these prompts; run a sweep first (it "
                             "evaluates the base model, which win rates are measured against)")
    p = np.asarray(p, dtype=float)
    rows = []
    for name in methods:
        grp = t.for_method(name)
        cid = preference_choice(grp, None, p)
        row: dict = {"method": name, "id": cid}
        if cid is not None:
            cand = grp.frame[grp.frame["id"] == cid].iloc[0]
            row.update({weight_column(v): cand.get(weight_column(v), np.nan) for v in ws.value_names})
            wins = win_rates(ws, [cid], base_id).iloc[0]
            row.update({f"win_{v}": float(wins[f"win_{v}"]) for v in ws.value_names})
        rows.append(row)
    cols = ["method", "id", *t.weight_columns(), *[f"win_{v}" for v in ws.value_names]]
    return pd.DataFrame(rows, columns=cols)


# ---- CRD (MI-EPO) ----

CRD_WHY = ("CRD (MI-EPO) is the mean det Cov of the rewards of sampled responses per preference; these "
           "candidates were decoded greedily (one response per prompt), so there are no samples to measure it; "
           "add a sampled evaluation of the candidates (`python -m mva_core sweep --method M --samples 3`, as `demo "
           "build` does for the conditioned policies), or set decoding do_sample=true (and num_samples) in "
           "workspace.json and sweep again")


@dataclass
class MethodCRD:
    """A method's CRD, or why it has none (`value` None)."""

    value: float | None
    why: str = ""
    samples_per_preference: int = 0  # reward vectors in each covariance: prompts × samples per prompt
    interval: Interval | None = None  # 95 % BCa bootstrap over the prompts (`crd_interval`)


def crd_by_method(ws: Workspace, table: Table, methods: Sequence[str]) -> dict[str, MethodCRD]:
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
    t = CandidateTable.of(table, ws.value_names)
    names = list(methods)
    P = pareto.preference_vectors(len(ws.value_names)) if len(ws.value_names) in (2, 3) else None
    base_id = t.base_id()
    if P is None:
        return {m: MethodCRD(None, f"no fixed evaluation preferences for {len(ws.value_names)} values (MI-EPO: 2 or 3)")
                for m in names}
    if base_id is None:
        return {m: MethodCRD(None, "no base-model candidate on these prompts: rewards cannot be z-scored") for m in names}
    base_rewards = prompt_rewards(ws, [base_id])[0]  # (P, V) per-prompt rewards of the base
    normaliser = ScoreNormaliser().fit(base_rewards)
    out = {}
    for name in names:
        grp = t.for_method(name)
        chosen = [preference_choice(grp, None, p) for p in P]
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


def crd_interval(ws: Workspace, group: Table, preferences: np.ndarray, chosen: Sequence[int],
                 base: np.ndarray, estimate: float, n_resamples: int = 1000, seed: int = 0) -> Interval:
    """95 % BCa interval of a method's CRD over the evaluation prompts, as HV's and MIP's (`bootstrap.bca_intervals`:
    the resamples of `bootstrap.resample_indices`, the jackknife over left-out prompts; the percentile interval where
    BCa is undefined). On each set of prompts: z-scores against the base model's rewards `base` (P, V) on those
    prompts, each p's candidate chosen again on them (the front candidate maximising p·z; a conditioned policy keeps
    its run with p, `chosen`) and the chosen candidates' samples on those prompts pooled. A set whose choice has no
    samples gives NaN (and the percentile interval over the other resamples). `estimate` is the CRD on the prompts
    as they are (`crd_by_method`)."""
    t = CandidateTable.of(group, ws.value_names)
    ids = t.ids()[t.finite()].astype(int)
    conditioned = is_conditioned(t)
    rewards = None if conditioned else prompt_rewards(ws, ids)  # (K, P, V)
    samples = sample_rewards(ws, sorted({int(c) for c in chosen}) if conditioned else ids.tolist())

    def choices_on(idx: np.ndarray) -> np.ndarray:
        """(N, |p|) the candidate id each p is scored with on each row's prompts; −1 where a front is empty."""
        if conditioned:
            return np.tile(np.asarray(chosen, dtype=int), (len(idx), 1))
        Z = z_means(rewards, base, idx)  # (N, K, V)
        out = np.full((len(idx), len(preferences)), -1, dtype=int)
        for b in range(len(idx)):
            front = pareto.front_indices(Z[b])
            if len(front):
                out[b] = ids[front[np.argmax(Z[b][front] @ preferences.T, axis=0)]]  # first maximum, as s(p)
        return out

    def crd_on(idx: np.ndarray) -> np.ndarray:
        """(1, N) CRD on each row of prompt indices `idx` (N, P')."""
        values = np.full(len(idx), np.nan)
        for b, (rows, picks) in enumerate(zip(idx, choices_on(idx))):
            if (picks < 0).any() or any(c not in samples for c in picks):
                continue
            normaliser = ScoreNormaliser().fit(base[rows])
            per_p = [normaliser.transform(samples[c][rows].reshape(-1, base.shape[1])) for c in picks]
            if all(np.isfinite(R).all() for R in per_p):
                values[b] = pareto.crd(per_p)
        return values[None]

    n_prompts = base.shape[0]
    resampled = crd_on(resample_indices(n_prompts, n_resamples, seed))  # (1, B)
    return bca_intervals(crd_on, n_prompts, resampled, [estimate])[0]


# ---- Follows-p (conditioned policies) ----

FOLLOWS_P_NOT_CONDITIONED = "not a conditioned policy: its candidates carry no requested preference p"


@dataclass
class MethodFollowsP:
    """A conditioned policy's follows-p (`follows_p`) with its interval, or why it has none (`value` None)."""

    value: float | None
    interval: Interval | None = None
    runs: int = 0  # the runs (one per requested p) it is computed over
    why: str = ""


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks along the last axis, tied entries sharing their mean rank (scipy.stats.rankdata "average"):
    rank_i = #{j: x_j < x_i} + (#{j: x_j = x_i} + 1) / 2. O(K²) per row: K is a handful of runs."""
    x = np.asarray(x, dtype=float)
    less = (x[..., None, :] < x[..., :, None]).sum(axis=-1)  # (..., K): entries below x_i
    equal = (x[..., None, :] == x[..., :, None]).sum(axis=-1)  # (..., K): entries equal to x_i, itself included
    return less + (equal + 1) / 2


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation along the last axis (Pearson's of the average ranks; broadcasts); NaN where
    either side is constant (no order to follow)."""
    ra, rb = average_ranks(a), average_ranks(b)
    ra = ra - ra.mean(axis=-1, keepdims=True)
    rb = rb - rb.mean(axis=-1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(axis=-1) * (rb ** 2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=-1) / den, np.nan)


def follows_p(preferences: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Follows-p (DESIGN "Metrics") of a conditioned policy's runs: does the realised trade-off rank as the
    requested preference does?

    `preferences` (K, V): the p each run was conditioned on; `Z` (..., K, V): each run's mean z-score per value
    (leading axes: e.g. bootstrap resamples). The realised trade-off of run k towards value i is how far it leans to
    i over the other values, t_ki = z_ki − mean_{j≠i} z_kj; follows-p is the mean over the values i whose p_i varies
    of Spearman(p_i, t_i) across the runs. For 2 values both terms equal Spearman(p_1, z_1 − z_2) (as p_2 = 1 − p_1
    and t_2 = −t_1), the number the issue asks for. +1: every step up in p_i is a step towards value i; 0: p
    is not followed; −1: followed backwards. NaN with fewer than 2 values or 3 runs, a non-finite z, or a
    constant trade-off."""
    W = np.asarray(preferences, dtype=float)  # (K, V)
    Z = np.asarray(Z, dtype=float)  # (..., K, V)
    K, V = W.shape
    if V < 2 or K < 3:
        return np.full(Z.shape[:-2], np.nan)
    trade = Z - (Z.sum(axis=-1, keepdims=True) - Z) / (V - 1)  # (..., K, V): z_i − mean of the other values
    varies = np.ptp(W, axis=0) > 0  # (V,) values whose requested weight changes across the runs
    if not varies.any():
        return np.full(Z.shape[:-2], np.nan)
    rho = spearman(W.T[varies], np.swapaxes(trade, -1, -2)[..., varies, :])  # (..., V'): over the K runs
    return np.where(np.isfinite(Z).all(axis=(-1, -2)), rho.mean(axis=-1), np.nan)


def follows_p_by_method(ws: Workspace, table: Table, methods: Sequence[str], n_resamples: int = 1000,
                        seed: int = 0) -> dict[str, MethodFollowsP]:
    """Follows-p (`follows_p`) of each conditioned policy among `methods` (mo-odpo, mi-epo, ric: candidates that
    carry their p), with its 95 % percentile interval over the evaluation prompts: the resamples of
    `bootstrap.resample_indices(P, n_resamples, seed)` — the same prompts HV's and MIP's resamples draw — each
    z-scoring the runs' mean rewards against the base model on those prompts (`bootstrap.z_means`). Runs with a
    non-finite reward on some prompt are left out. Other methods get None with the reason."""
    t = CandidateTable.of(table, ws.value_names)
    base_id = t.base_id()
    base = prompt_rewards(ws, [base_id])[0] if base_id is not None else None  # (P, V)
    out = {}
    for name in methods:
        grp = t.for_method(name)
        if grp.empty or not is_conditioned(grp):
            out[name] = MethodFollowsP(None, why=FOLLOWS_P_NOT_CONDITIONED)
            continue
        if base is None:
            out[name] = MethodFollowsP(None, why="no base-model candidate on these prompts: rewards cannot be "
                                                 "z-scored")
            continue
        R = prompt_rewards(ws, grp.ids().tolist())  # (K, P, V)
        keep = np.isfinite(R).all(axis=(1, 2))
        W = grp.weights()[keep]  # (K', V) requested p of each run kept
        if len(W) < 3 or len(ws.value_names) < 2:
            out[name] = MethodFollowsP(None, runs=len(W), why=f"{len(W)} runs with finite rewards on every prompt "
                                       "(need 3 or more, of 2 or more values) to rank")
            continue
        def on_prompts(idx: np.ndarray, R: np.ndarray = R[keep], W: np.ndarray = W) -> np.ndarray:
            """(1, N) follows-p on each row of prompt indices `idx` (N, P')."""
            return follows_p(W, z_means(R, base, idx))[None]

        n_prompts = base.shape[0]
        estimate = float(on_prompts(np.arange(n_prompts)[None])[0, 0])
        if not np.isfinite(estimate):
            out[name] = MethodFollowsP(None, runs=len(W), why="the realised trade-off is the same for every run: "
                                                              "no order to compare with p")
            continue
        samples = on_prompts(resample_indices(n_prompts, n_resamples, seed))[0]  # (B,): HV's resamples
        # percentile, not BCa: BCa corrects the bias of max-type statistics (HV, MIP), and its coverage is tested for
        # those (tests/test_bootstrap_coverage.py), not for a rank correlation over ~11 runs, whose resamples are
        # few distinct values (there BCa moved the demo's RiC interval from [−0.86, +0.07] to [−0.94, −0.32])
        out[name] = MethodFollowsP(estimate, percentile_interval(samples, estimate), len(W))
    return out


# ---- Cost of a candidate ----

@dataclass(frozen=True)
class MethodCost:
    """What generating one candidate of a method costs: model rows per generated token (1 for a model composed in
    its weights, n + 1 for a decode-time mixture, MOD) and the measured wall seconds of generation per candidate
    (all its prompts; scoring not counted) over the sweeps that generated some (None where none was timed)."""

    rows_per_token: int | None
    seconds_per_candidate: float | None
    candidates_timed: int  # candidates those seconds are measured over

    def to_dict(self) -> dict:
        return {"rows_per_token": self.rows_per_token, "seconds_per_candidate": self.seconds_per_candidate,
                "candidates_timed": self.candidates_timed}


def generation_cost(ws: Workspace, methods: Sequence[str]) -> dict[str, MethodCost]:
    """Per method: `MethodCost` from the finished sweeps recorded under its name (their logs hold `generated` and
    `generate_seconds`, sweep.sweep_groups); rows per token from its kind (kinds.CompositionKind.rows_per_token).
    Seconds compare between methods swept on the same prompts, decoding and machine."""
    rows = {m.name: m for m in ws.compared_methods()}
    runs = ws.store.runs()
    runs = runs[(runs["kind"] == "sweep") & (runs["status"] == "done")]
    out = {}
    for name in methods:
        seconds, generated = 0.0, 0
        for log in runs.loc[runs["method"] == name, "log"]:
            entry = json.loads(log or "{}")
            if entry.get("generated") and entry.get("generate_seconds") is not None:
                seconds += float(entry["generate_seconds"])
                generated += int(entry["generated"])
        row = rows.get(name)
        out[name] = MethodCost(row.kind.rows_per_token(len(row.vector_dirs)) if row is not None else None,
                               seconds / generated if generated else None, generated)
    return out


# ---- Intervals over the prompts ----

def compare_with_intervals(ws: Workspace, table: Table, methods: Sequence[str] | None = None,
                           ref: np.ndarray | None = None, n_resamples: int = 1000,
                           seed: int = 0) -> BootstrapComparison:
    """HV and MIP of each method of one workspace with 95 % BCa bootstrap intervals over its evaluation prompts, and
    every pair's paired HV difference with its percentile interval (mva_core.bootstrap). The point estimates are `compare_table`'s; the
    reference point defaults to the same shared one (`reference_point` of the compared methods and the base)."""
    t = CandidateTable.of(table, ws.value_names)
    present = methods_present(t, [m.name for m in ws.compared_methods()])
    names = list(methods or present)
    missing = [m for m in names if m not in present]
    if missing:
        raise WorkspaceError(f"methods {missing} have no candidates in {ws.root}; methods with candidates: {present}")
    base_id = t.base_id()
    if base_id is None:
        raise WorkspaceError(f"{ws.root} has no base-model candidate on these prompts; run a sweep first (it "
                             "evaluates the base model, the reference of every z-score)")
    ref = reference_point(t.for_methods(names), ref=ref)
    scored = []
    for name in names:
        grp = t.for_method(name)
        scored.append(MethodScores(name, prompt_rewards(ws, grp.ids().tolist()),
                                   grp.weights() if is_conditioned(grp) else None))
    return bootstrap_compare(scored, prompt_rewards(ws, [base_id])[0], ref=ref, n_resamples=n_resamples, seed=seed)


def comparison_json(result: BootstrapComparison, crd: dict[str, MethodCRD],
                    follows: dict[str, MethodFollowsP] | None = None,
                    cost: dict[str, MethodCost] | None = None) -> dict:
    """The `compare --json` document (DESIGN §3): ref, per method hv/mip with intervals, crd (`crd_by_method`; null
    with "crd_why" when not defined), follows_p and follows_p_ci (`follows_p_by_method`; null for a method that is
    not a conditioned policy), n_prompts; per pair "a|b" the paired HV difference, its interval and the share of
    resamples where a wins; per method "cost" (`generation_cost`: rows_per_token, seconds_per_candidate,
    candidates_timed) when given. "interval" names how a method's intervals are computed ("BCa"), "diff_interval" the
    pairs' ("percentile"); per method "ci_method" says it for each of its intervals ("percentile" where BCa is not
    defined, `bootstrap.bca_intervals`)."""
    def number(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None

    def crd_of(name: str) -> dict:
        c = crd.get(name, MethodCRD(None, "not computed for this method"))
        return {"crd": c.value, "crd_why": c.why or None,
                **({"crd_samples_per_preference": c.samples_per_preference} if c.value is not None else {}),
                **({"crd_ci": c.interval.as_list()} if c.interval is not None else {})}

    def follows_of(name: str) -> dict:
        f = (follows or {}).get(name, MethodFollowsP(None, why="not computed for this method"))
        return {"follows_p": f.value,
                "follows_p_ci": [number(x) for x in f.interval.as_list()] if f.interval is not None else None}

    def ci_methods(name: str, m: MethodMetrics) -> dict:
        c = crd.get(name)
        f = (follows or {}).get(name)
        return {"hv": m.hv.method, "mip": m.mip.method,
                **({"crd": c.interval.method} if c is not None and c.interval is not None else {}),
                **({"follows_p": f.interval.method} if f is not None and f.interval is not None else {})}

    return {
        "ref": [float(x) for x in result.ref], "n_resamples": result.n_resamples, "seed": result.seed,
        "interval": PER_METHOD_INTERVAL, "diff_interval": DIFFERENCE_INTERVAL,
        "methods": {name: {"hv": number(m.hv.estimate), "hv_ci": [number(x) for x in m.hv.as_list()],
                           "mip": number(m.mip.estimate), "mip_ci": [number(x) for x in m.mip.as_list()],
                           **crd_of(name), **follows_of(name), "ci_method": ci_methods(name, m),
                           "n_prompts": m.n_prompts,
                           **({"cost": cost[name].to_dict()} if cost is not None and name in cost else {})}
                    for name, m in result.methods.items()},
        "pairs": {f"{a}|{b}": {"hv_diff": number(d.hv_diff.estimate),
                               "hv_diff_ci": [number(x) for x in d.hv_diff.as_list()],
                               "p_a_better": d.p_a_better, "verdict": d.verdict(a, b)}
                  for (a, b), d in result.pairs.items()},
    }
