"""The paper's evidence regenerated on a workspace (issue 28 item 1): MVA's Table 1 ablation, Fig. 4 (HSIC vs
orthogonality fronts), Fig. 5 (each value vector alone vs the per-value DPO vector), Fig. 6 (layer-wise cosines),
Fig. 7 (α ∈ {1, 10, 50} fronts) and MI-EPO's MIP/CRD table, every number over prompts with its 95 % bootstrap
interval, and what the workspace lacks with the command that makes it.

`build_report` returns a `PaperReport` (plain data: dataclasses, numpy arrays, DataFrames); the HTML and markdown
writers (`report_render`) and the Paper page render that one structure. `make_missing` trains and sweeps what a
workspace lacks (`report --train-missing`) with the same functions `train` and `sweep` run.

Table 1's settings (MVA paper §5, ablation; DESIGN §1):
- Base: the base model alone.
- w/o All: the independent per-value DPO vectors (`mva-no-hsic`: no HSIC) on the simplex Σw = 1 (no extrapolation):
  Rewarded Soups' interpolation.
- w/o HSIC: the same vectors on the extrapolated grid [0, C]^n (Eq.15–18).
- w/o Extrap.: MVA's decorrelated vectors (Eq.14) restricted to the simplex Σw = 1.
- MVA: MVA's vectors on the extrapolated grid, then Pareto selection (Eq.20).
Each row's candidates are the stored candidates of that vector set whose weights lie in that region; its per-value
rewards are the MEAN, over the row's Pareto-front models, of each model's mean raw reward (scorer units) on the
prompts; its HV and MIP are in z units against ONE reference point shared by every row and figure. On every
bootstrap resample of the prompts the z-scores, the front and the mean over it are recomputed (as for HV).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import pandas as pd

from . import pareto
from .bootstrap import (BootstrapComparison, Interval, bca_intervals, few_prompts_caveat, hypervolumes, mips,
                        percentile_interval, resample_indices, z_means)
from .config import META_FILE
from .errors import MVAError
from .metrics import (CRD_WHY, MethodCRD, compare_with_intervals, crd_by_method, is_conditioned, prompt_rewards,
                      reference_point)
from .table import CandidateTable, methods_present
from .workspace import Workspace

Progress = Callable[[str, int, int], None]  # (stage, done, total)

PAPER_ALPHAS = (1.0, 10.0, 50.0)  # MVA paper Fig.7: α ∈ {1, 10, 50}
SAMPLES = 3  # responses per prompt of the sampled evaluation `--train-missing` makes for CRD (the demos' count)
DEFAULT_ALPHA = 10.0  # the `mva` method's default α (the demo's run)
SUMMARY_RULE = ("per-value reward = mean, over the setting's Pareto-front models, of each model's mean raw reward "
                "(scorer units) on the evaluation prompts; HV and MIP in z units against one shared reference point")


class ReportError(MVAError, ValueError):
    """The report cannot be built from this workspace; the message says what to add."""


# ---- What the report is made of ----

@dataclass
class Step:
    """One thing `make_missing` runs: train a method's vectors into vectors/<out>/, or sweep a comparison row."""

    action: Literal["train", "sweep", "sample"]  # sample: a sampled evaluation of a row (CRD), `sweep --samples`
    method: str  # train: the registered method; sweep: the comparison row
    out: str = ""  # train: vectors/<out>/
    settings: dict = field(default_factory=dict)  # train: the method's settings (alpha, ...)
    kind: str | None = None  # sweep: a grid kind overriding the row's own (e.g. "simplex")
    step: float = 0.25  # sweep: the grid step


@dataclass
class Missing:
    """Something a table or figure needs that the workspace lacks, the commands that make it, and whether
    `report --train-missing` makes it (`steps`; empty: it is made by hand, as `commands` say)."""

    item: str  # what lacks, in the paper's terms ("Fig. 4: the ortho vectors")
    why: str
    commands: list[str]
    steps: list[Step] = field(default_factory=list)


@dataclass
class SettingRow:
    """One row of Table 1: a vector set on a weight region, summarised over its Pareto-front models."""

    label: str  # "Base", "w/o All", "w/o HSIC", "w/o Extrap.", "MVA"
    definition: str
    candidate_ids: list[int]
    front_ids: list[int]  # its front on the prompts as they are
    hv: Interval
    mip: Interval
    rewards: list[Interval]  # per value: mean over the front of the raw mean reward (scorer units)
    diff_hv: Interval | None = None  # full MVA − this row (paired percentile), None for MVA itself
    diff_mip: Interval | None = None
    diff_rewards: list[Interval] | None = None


@dataclass
class FrontSeries:
    """One method's candidates in a front figure."""

    name: str  # the comparison row
    label: str  # as the legend shows it ("mva (α = 10)")
    ids: np.ndarray  # (K,)
    weights: np.ndarray  # (K, V)
    z: np.ndarray  # (K, V) z-scores against the base model
    on_front: np.ndarray  # (K,) bool
    off_simplex: np.ndarray  # (K,) bool: Σw ≠ 1 (what extrapolation adds; False for non-grid methods)
    hv: Interval | None = None
    mip: Interval | None = None


@dataclass
class FrontFigure:
    key: str  # "fig4", "fig7", "fronts"
    title: str
    caption: str
    series: list[FrontSeries]
    differences: list[tuple[str, Interval, float, str]] = field(default_factory=list)  # (a − b label, ΔHV,
    # P(a better), the verdict: `bootstrap.PairDifference.verdict`)


@dataclass
class VertexRow:
    """Fig. 5, one value: θ_v of MVA alone at w = e_v vs the per-value DPO vector alone (dpo-<value>)."""

    value: str
    mva_id: int | None
    dpo_id: int | None
    mva: list[Interval] | None  # per value, z (mean over prompts)
    dpo: list[Interval] | None
    diff: list[Interval] | None  # MVA − DPO, paired percentile


@dataclass
class CosineMap:
    """Fig. 6: one vector set's layer-wise cosines (`diagnostics.layer_cosines` rows)."""

    method: str
    label: str
    frame: pd.DataFrame


@dataclass
class ConditionedRow:
    """MI-EPO's table, one conditioned policy: MIP and CRD with intervals (CRD None with its reason)."""

    method: str
    mip: Interval
    hv: Interval
    crd: MethodCRD


@dataclass
class MethodRow:
    """Every compared method: HV and MIP with intervals (the generic table; mod, mva-delta, … included)."""

    method: str
    kind: str
    candidates: int
    front: int
    hv: Interval
    mip: Interval


@dataclass
class PaperReport:
    workspace: str  # as the commands name it
    values: list[str]
    n_prompts: int
    n_resamples: int
    seed: int
    ref: np.ndarray  # (V,) shared reference point, z units
    caveat: str | None
    table1: list[SettingRow]
    methods: list[MethodRow]
    fronts: FrontFigure  # every method's front
    fig4: FrontFigure
    fig5: list[VertexRow]
    fig6: list[CosineMap]
    fig7: FrontFigure
    conditioned: list[ConditionedRow]
    conditioned_pairs: list[tuple[str, Interval]]  # MIP(a) − MIP(b), paired percentile
    missing: list[Missing]
    seconds: float = 0.0

    def missing_for(self, prefix: str) -> list[Missing]:
        """The lacks of one table or figure (their `item` starts with `prefix`, e.g. "Fig. 4")."""
        return [m for m in self.missing if m.item.startswith(prefix)]


# ---- Statistics over prompt resamples ----

def front_mask(Z: np.ndarray) -> np.ndarray:
    """(N, K) bool: candidate k is finite and no finite candidate of the same set dominates it (MVA Eq.20), per
    resample row of `Z` (N, K, V); rewards maximised."""
    finite = np.isfinite(Z).all(axis=-1)  # (N, K)
    Zf = np.where(finite[..., None], Z, -np.inf)
    ge = (Zf[:, :, None, :] >= Zf[:, None, :, :]).all(axis=-1)  # (N, J, K): j ≥ k everywhere
    gt = (Zf[:, :, None, :] > Zf[:, None, :, :]).any(axis=-1)
    dominated = (ge & gt & finite[:, :, None]).any(axis=1)  # (N, K)
    return finite & ~dominated


def setting_statistic(R: np.ndarray, base: np.ndarray, ref: np.ndarray,
                      preferences: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Prompt indices (N, P') → (2 + V, N): [HV, MIP, mean over the front of each value's raw mean reward] of the
    candidates `R` (K, P, V) on each row's prompts (z against the base model's rewards `base` (P, V) there)."""
    def on_prompts(idx: np.ndarray) -> np.ndarray:
        Z = z_means(R, base, idx)  # (N, K, V)
        raw = R[:, idx, :].mean(axis=2).transpose(1, 0, 2)  # (K, N, P', V) -> (N, K, V)
        front = front_mask(Z)  # (N, K)
        with np.errstate(invalid="ignore"):
            reward = (np.where(front[..., None], raw, 0.0).sum(axis=1)
                      / front.sum(axis=1)[:, None])  # (N, V); NaN for an empty front
        return np.concatenate([hypervolumes(Z, ref)[None], mips(Z, preferences)[None], reward.T])
    return on_prompts


def candidate_statistic(R: np.ndarray, base: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Prompt indices (N, P') → (V, N): one candidate's z-score per value (`R` (1, P, V))."""
    def on_prompts(idx: np.ndarray) -> np.ndarray:
        return z_means(R, base, idx)[:, 0, :].T
    return on_prompts


@dataclass
class _Resampled:
    estimates: np.ndarray  # (k,)
    samples: np.ndarray  # (k, B)
    intervals: list[Interval]


def _resampled(statistic: Callable[[np.ndarray], np.ndarray], n_prompts: int, idx: np.ndarray) -> _Resampled:
    """The statistic on the prompts as they are and on the resamples `idx`, with BCa intervals (bootstrap.bca_intervals;
    percentile where BCa is undefined)."""
    estimates = statistic(np.arange(n_prompts)[None])[:, 0]
    samples = statistic(idx)
    return _Resampled(estimates, samples, bca_intervals(statistic, n_prompts, samples, estimates))


def _paired(a: _Resampled, b: _Resampled) -> list[Interval]:
    """a − b per statistic: percentile intervals of the paired differences over the same resamples."""
    return [percentile_interval(sa - sb, ea - eb) for sa, sb, ea, eb in zip(a.samples, b.samples, a.estimates,
                                                                           b.estimates)]


# ---- What the workspace holds ----

def _meta(vector_dir: Path) -> dict:
    f = vector_dir / META_FILE
    try:
        return json.loads(f.read_text()) if f.is_file() else {}
    except (OSError, json.JSONDecodeError):  # an unreadable metadata file: the run is not identified, not fatal
        return {}


# What else an `mva` run may vary besides α (mva_vector.json keys): Fig. 7 compares runs that differ in α only
VARIANT_KEYS = ("penalty", "hsic_mode", "hsic_kernel", "hsic_sigma", "hsic_estimator")


def alpha_runs(ws: Workspace) -> dict[float, str]:
    """α → the vector set (vectors/<dir>) of each `mva` run with one vector per value, identified by its vectors'
    mva_vector.json (`method` "mva" and its `alpha`), whatever the dir is named. Only runs with the same other
    settings (`VARIANT_KEYS`: HSIC samples, kernel, …) as vectors/mva count (an `mva-delta` run is another variant,
    not another α). Two dirs with one α: the one named `mva` wins, else the first by name."""
    out: dict[float, str] = {}
    reference = _meta(ws.root / "vectors" / "mva" / ws.value_names[0])
    reference = reference if reference.get("method") == "mva" else None
    for name in ws.methods():
        meta = _meta(ws.root / "vectors" / name / ws.value_names[0])
        if meta.get("method") != "mva" or not isinstance(meta.get("alpha"), (int, float)):
            continue
        if reference is not None and any(meta.get(k) != reference.get(k) for k in VARIANT_KEYS):
            continue
        a = float(meta["alpha"])
        if a not in out or name == "mva":
            out[a] = name
    return dict(sorted(out.items()))


def _grid_step(weights: np.ndarray, default: float = 0.25) -> float:
    """The step of a stored grid: the smallest positive gap between its weights (`default` without one)."""
    w = np.unique(np.round(weights[np.isfinite(weights)], 9))
    gaps = np.diff(w)
    gaps = gaps[gaps > 1e-9]
    return float(gaps.min()) if len(gaps) else default


class _Commands:
    """The commands that make a missing part, naming the workspace as the user did."""

    def __init__(self, ws: Workspace, label: str, step: float):
        from .diagnostics import DiagnosticsError, preference_pair_files
        self.ws, self.label, self.step = ws, label, step
        try:
            files = preference_pair_files(ws)
        except DiagnosticsError:
            files = {}
        self.pairs = files  # value -> pair file; {} when the workspace has none (training is then by hand)

        def shown(p: Path) -> str:
            try:
                return f"{label}/{p.resolve().relative_to(ws.root)}"
            except ValueError:
                return str(p)
        self.data = " ".join(f"--data {v}={shown(f)}" for v, f in files.items()) if files else \
            " ".join(f"--data {v}=PAIRS_{v.upper()}.jsonl" for v in ws.value_names)
        self.train_flags = _train_flags(ws)

    def train(self, method: str, out: str, **settings: float) -> str:
        extra = "".join(f" --{k} {v:g}" for k, v in settings.items())
        out_flag = "" if out == method else f" --out {self.label}/vectors/{out}"
        return (f"python -m mva_core train --workspace {self.label} --method {method} --values "
                f"{','.join(self.ws.value_names)} {self.data} --base {self.ws.manifest.base}{extra}{out_flag}"
                f"{self.train_flags}")

    def sweep(self, row: str, kind: str | None = None, step: float | None = None) -> str:
        s = self.step if step is None else step
        top = 1.0 if kind == "simplex" else self.ws.manifest.C
        return (f"python -m mva_core sweep --workspace {self.label} --method {row} --grid 0:{top:g}:{s:g}"
                + (f" --kind {kind}" if kind else ""))


def _train_flags(ws: Workspace) -> str:
    """--steps/--lr/--seed of the workspace's `mva` vectors (so a new run is trained like them), else none."""
    meta = _meta(ws.root / "vectors" / "mva" / ws.value_names[0]) if ws.value_names else {}
    cfg = meta.get("train_config") or {}
    flags = [(k, cfg.get(c)) for k, c in (("steps", "max_steps"), ("lr", "learning_rate"), ("seed", "seed"))]
    return "".join(f" --{k} {v:g}" for k, v in flags if isinstance(v, (int, float)))


def _train_config(ws: Workspace):
    """The TrainConfig of the workspace's `mva` vectors (a new run trained like them), else CPU_SMALL."""
    from .config import CPU_SMALL, TrainConfig
    meta = _meta(ws.root / "vectors" / "mva" / ws.value_names[0])
    cfg = meta.get("train_config")
    if isinstance(cfg, dict):
        known = set(TrainConfig.__dataclass_fields__)
        return TrainConfig.from_dict({k: v for k, v in cfg.items() if k in known})
    return CPU_SMALL


# ---- Building the report ----

def _vector_set_rows(table: CandidateTable, name: str) -> CandidateTable:
    return CandidateTable(table.for_method(name).frame, table.value_names)


def _simplex(rows: CandidateTable) -> CandidateTable:
    W = rows.weights()
    on = np.isfinite(W).all(axis=1) & (np.abs(W.sum(axis=1) - 1.0) < 1e-6) if len(W) else np.zeros(0, dtype=bool)
    return CandidateTable(rows.frame[on], rows.value_names)


def build_report(ws: Workspace, workspace_label: str | None = None, n_resamples: int = 1000, seed: int = 0,
                 progress: Progress | None = None) -> PaperReport:
    """The paper's tables and figures on `ws` from its store (nothing is generated or written), every number over
    prompts with its 95 % interval: BCa over prompt resamples for a method's own numbers, percentile over the same
    resamples for paired differences (`bootstrap`). `workspace_label` is how commands name the workspace (default
    its path). What a part lacks is in `missing`, with the commands that make it."""
    from .results import load_table
    started = time.perf_counter()
    label = workspace_label or str(ws.root)
    values = ws.value_names
    n_values = len(values)
    if n_values not in (2, 3):
        raise ReportError(f"{ws.root} has {n_values} value(s) ({', '.join(values)}); the paper's tables compare 2 or "
                          "3 values (MI-EPO's evaluation preferences are fixed for those); use a workspace of 2 or 3")
    table = load_table(ws)
    missing: list[Missing] = []
    tick = progress or (lambda stage, done, total: None)
    stages = 6
    tick("report", 0, stages)

    mva_rows = table.for_method("mva")
    step = _grid_step(mva_rows.weights()) if len(mva_rows) else 0.25
    cmd = _Commands(ws, label, step)
    present_vectors = set(ws.methods())
    trainable = bool(cmd.pairs)

    def need_vectors(item: str, method: str, out: str | None = None, **settings: float) -> Missing:
        out = out or method
        return Missing(item, f"no {out} vectors under {label}/vectors/{out}/",
                       [cmd.train(method, out, **settings), cmd.sweep(out)],
                       [Step("train", method, out, dict(settings)), Step("sweep", out, step=step)]
                       if trainable else [])

    def need_sweep(item: str, row: str, kind: str | None = None) -> Missing:
        return Missing(item, f"{row} has no candidates{' on the simplex' if kind else ''} on these prompts",
                       [cmd.sweep(row, kind)], [Step("sweep", row, kind=kind, step=step)])

    base_id = table.base_id()
    if base_id is None:
        first = next((m.name for m in ws.compared_methods()), "mva")
        raise ReportError(f"{ws.root} has no base-model candidate on its prompts; run "
                          f"`{cmd.sweep(first)}` first (it evaluates the base model)")
    base = prompt_rewards(ws, [base_id])[0]  # (P, V)
    n_prompts = base.shape[0]
    if n_prompts < 2:
        raise ReportError(f"{ws.root} evaluates {n_prompts} prompt(s); intervals over prompts need at least 2 "
                          "(give workspace.json's prompt set more and sweep again)")
    P = pareto.preference_vectors(n_values)  # MI-EPO's fixed evaluation preferences (2 or 3 values, as compare)
    ref = reference_point(table)  # the Compare page's: per-value minimum over every candidate and the base
    idx = resample_indices(n_prompts, n_resamples, seed)

    # ---- every compared method (one bootstrap: HV, MIP, paired HV differences) ----
    present = methods_present(table, [m.name for m in ws.compared_methods()])
    kinds = {m.name: m.kind for m in ws.compared_methods()}
    boot: BootstrapComparison | None = (compare_with_intervals(ws, table, present, ref, n_resamples, seed)
                                        if present else None)
    tick("report", 1, stages)
    method_rows = [MethodRow(name, kinds[name].name if name in kinds else "old vectors", len(table.for_method(name)),
                             len(table.front(name)), boot.methods[name].hv, boot.methods[name].mip)
                   for name in present] if boot else []

    def series(name: str, label_: str | None = None) -> FrontSeries:
        rows = table.for_method(name)
        W = rows.weights()
        grid = name in kinds and kinds[name].has_grid
        off = (np.abs(np.nan_to_num(W).sum(axis=1) - 1.0) > 1e-6) if grid else np.zeros(len(rows), dtype=bool)
        m = boot.methods.get(name) if boot else None
        return FrontSeries(name, label_ or name, rows.ids().astype(int), W, rows.z(),
                           rows.frame["on_front"].to_numpy(dtype=bool), off, m.hv if m else None,
                           m.mip if m else None)

    def difference(a: str, b: str) -> tuple[str, Interval, float, str] | None:
        d = boot.difference(a, b) if boot else None
        return None if d is None else (f"{a} − {b}", d.hv_diff, d.p_a_better, d.verdict(a, b))

    fronts = FrontFigure("fronts", "Every method's front", "Each compared method's candidates (z vs the base "
                         "model); the line joins its Pareto front. Candidates off the simplex (Σw ≠ 1) are what "
                         "extrapolation adds.", [series(n) for n in present])

    # ---- Table 1 ----
    settings: list[tuple[str, str, CandidateTable | None, Missing | None]] = []
    base_rows = CandidateTable(table.base().frame.tail(1), table.value_names)
    settings.append(("Base", "the base model alone", base_rows, None))
    for lbl, source, simplex, what in [
            ("w/o All", "mva-no-hsic", True, "independent per-value DPO vectors (no HSIC), simplex Σw = 1"),
            ("w/o HSIC", "mva-no-hsic", False, "independent per-value DPO vectors (no HSIC), extrapolated [0, C]^n"),
            ("w/o Extrap.", "mva", True, "MVA's decorrelated vectors (DPO + α·HSIC), simplex Σw = 1"),
            ("MVA", "mva", False, "MVA's decorrelated vectors, extrapolated [0, C]^n, Pareto selection")]:
        item = f"Table 1 ({lbl})"
        if source not in present_vectors:
            settings.append((lbl, what, None, need_vectors(item, source)))
            continue
        rows = _vector_set_rows(table, source)
        rows = _simplex(rows) if simplex else rows
        rows = CandidateTable(rows.frame[rows.finite()], rows.value_names)
        if rows.empty:
            settings.append((lbl, what, None, need_sweep(item, source, "simplex" if simplex else None)))
            continue
        settings.append((lbl, what, rows, None))
    resampled: dict[str, _Resampled] = {}
    table1: list[SettingRow] = []
    for lbl, what, rows, lack in settings:
        if rows is None:
            missing.append(lack)
            continue
        R = prompt_rewards(ws, rows.ids().astype(int).tolist())  # (K, P, V)
        statistic = setting_statistic(R, base, ref, P)
        res = resampled[lbl] = _resampled(statistic, n_prompts, idx)
        front = front_mask(z_means(R, base, np.arange(n_prompts)[None]))[0]
        table1.append(SettingRow(lbl, what, rows.ids().astype(int).tolist(),
                                 rows.ids()[front].astype(int).tolist(), res.intervals[0], res.intervals[1],
                                 res.intervals[2:]))
    if "MVA" in resampled:
        for row in table1:
            if row.label != "MVA":
                d = _paired(resampled["MVA"], resampled[row.label])
                row.diff_hv, row.diff_mip, row.diff_rewards = d[0], d[1], d[2:]
    tick("report", 2, stages)

    # ---- Fig. 4: HSIC vs orthogonality ----
    fig4_series, fig4_diff = [], []
    for name, what in (("mva", "HSIC (mva)"), ("ortho", "orthogonality (ortho)")):
        if name not in present_vectors:
            missing.append(need_vectors(f"Fig. 4 ({name})", name))
        elif name not in present:
            missing.append(need_sweep(f"Fig. 4 ({name})", name))
        else:
            fig4_series.append(series(name, what))
    if len(fig4_series) == 2 and (d := difference("mva", "ortho")):
        fig4_diff.append(d)
    fig4 = FrontFigure("fig4", "Fig. 4: HSIC vs orthogonality", "Fronts of the value vectors decorrelated by HSIC "
                       "(MVA Eq.14) and by the orthogonality penalty Σ‖ΔW_iᵀΔW_j‖²_F, both on the extrapolated grid.",
                       fig4_series, fig4_diff)

    # ---- Fig. 5: each value vector alone vs the per-value DPO vector ----
    fig5: list[VertexRow] = []
    mva_finite = CandidateTable(mva_rows.frame[mva_rows.finite()], values) if len(mva_rows) else mva_rows
    for i, v in enumerate(values):
        e = np.eye(n_values)[i]
        W = mva_finite.weights()
        hit = mva_finite.ids()[np.abs(W - e).max(axis=1) < 1e-9] if len(W) else []
        dpo = table.for_method(f"dpo-{v}")
        dpo_ids = dpo.ids()[dpo.finite()] if len(dpo) else []
        mva_id = int(hit[0]) if len(hit) else None
        dpo_id = int(dpo_ids[0]) if len(dpo_ids) else None
        if mva_id is None:
            missing.append(need_vectors(f"Fig. 5 (θ_{v} of mva alone)", "mva") if "mva" not in present_vectors
                           else need_sweep(f"Fig. 5 (θ_{v} of mva alone)", "mva"))
        if dpo_id is None:
            missing.append(need_vectors(f"Fig. 5 (dpo-{v})", "mva-no-hsic") if "mva-no-hsic" not in present_vectors
                           else need_sweep(f"Fig. 5 (dpo-{v})", f"dpo-{v}"))
        res = {k: _resampled(candidate_statistic(prompt_rewards(ws, [c]), base), n_prompts, idx)
               for k, c in (("mva", mva_id), ("dpo", dpo_id)) if c is not None}
        fig5.append(VertexRow(v, mva_id, dpo_id, res["mva"].intervals if "mva" in res else None,
                              res["dpo"].intervals if "dpo" in res else None,
                              _paired(res["mva"], res["dpo"]) if len(res) == 2 else None))
    tick("report", 3, stages)

    # ---- Fig. 6: layer-wise cosines of every vector set with one vector per value ----
    fig6: list[CosineMap] = []
    if n_values >= 2:
        from .diagnostics import layer_cosines, load_method_vectors
        alphas = {name: a for a, name in alpha_runs(ws).items()}
        for name in ws.methods():
            extra = f" (α = {alphas[name]:g})" if name in alphas else ""
            fig6.append(CosineMap(name, name + extra, layer_cosines(load_method_vectors(ws, name))))
    if "mva" not in present_vectors:
        missing.append(need_vectors("Fig. 6 (mva)", "mva"))
    tick("report", 4, stages)

    # ---- Fig. 7: α ∈ {1, 10, 50} ----
    runs = alpha_runs(ws)
    fig7_series = []
    for a in sorted(set(PAPER_ALPHAS) | set(runs)):
        name = runs.get(a)
        # α = 10 is `mva`'s default run; a vectors/mva of another (or no recorded) α keeps its place
        out = "mva" if a == DEFAULT_ALPHA and not (ws.root / "vectors" / "mva").exists() else f"mva-alpha{a:g}"
        if name is None:
            missing.append(need_vectors(f"Fig. 7 (α = {a:g})", "mva", out, alpha=a))
        elif name not in present:
            missing.append(need_sweep(f"Fig. 7 (α = {a:g})", name))
        else:
            fig7_series.append(series(name, f"α = {a:g} ({name})"))
    fig7_diff = [d for s in fig7_series if s.name != runs.get(DEFAULT_ALPHA)
                 for d in [difference(runs.get(DEFAULT_ALPHA, ""), s.name)] if d]
    fig7 = FrontFigure("fig7", "Fig. 7: the HSIC weight α", "MVA's fronts for each α of Value Decorrelation Training "
                       "(Eq.14), each run identified by its vectors' mva_vector.json.", fig7_series, fig7_diff)
    tick("report", 5, stages)

    # ---- MI-EPO: MIP and CRD of the conditioned policies ----
    cond = [n for n in present if is_conditioned(table.for_method(n))]
    crd = crd_by_method(ws, table, cond) if cond else {}
    conditioned = [ConditionedRow(n, boot.methods[n].mip, boot.methods[n].hv, crd[n]) for n in cond] if boot else []
    pairs = [(f"{a} − {b}", percentile_interval(boot.methods[a].mip_samples - boot.methods[b].mip_samples,
                                                boot.methods[a].mip.estimate - boot.methods[b].mip.estimate))
             for i, a in enumerate(cond) for b in cond[i + 1:]] if boot else []
    if not cond:
        missing.append(Missing("MI-EPO table (policies)", "no conditioned policy (mo-odpo, mi-epo) with candidates",
                               [cmd.train("mi-epo", "mi-epo"), cmd.sweep("mi-epo")],
                               [Step("train", "mi-epo", "mi-epo"), Step("sweep", "mi-epo", step=step)]
                               if trainable else []))
    elif any(c.value is None and c.why == CRD_WHY for c in crd.values()):
        missing.append(Missing(
            "MI-EPO table (CRD)", "every candidate was decoded greedily (one response per prompt): CRD needs sampled "
            "responses",
            [cmd.sweep(n) + f" --samples {SAMPLES}" for n in cond],
            [Step("sample", n, step=step) for n in cond]))
    tick("report", stages, stages)
    return PaperReport(label, values, n_prompts, n_resamples, seed, np.asarray(ref, dtype=float),
                       few_prompts_caveat(n_prompts), table1, method_rows, fronts, fig4, fig5, fig6, fig7,
                       conditioned, pairs, _unique(missing), time.perf_counter() - started)


def _unique(missing: list[Missing]) -> list[Missing]:
    """One entry per (item); commands already listed by an earlier entry are kept (each item says what it needs)."""
    seen, out = set(), []
    for m in missing:
        if m.item not in seen:
            seen.add(m.item)
            out.append(m)
    return out


# ---- Making what is missing (`report --train-missing`) ----

def make_missing(ws: Workspace, missing: Sequence[Missing], progress: Progress | None = None) -> list[str]:
    """Run the steps of every missing part that has them (train a method's vectors with the workspace's pairs and
    its `mva` vectors' training config, then sweep the row at the stored grid step), each step once, with
    progress; a sampled evaluation (CRD) decodes the row's candidates with `SAMPLES` responses per prompt
    (`sweep.sampled_decoding`). Returns what was done, one line each."""
    from .diagnostics import load_preference_pairs
    from .methods import get_method, train_method
    from .models import load_base
    from .sweep import evaluate_base, method_groups, sampled_decoding, sampled_evaluation, sweep_groups
    steps: list[Step] = []
    for m in missing:
        for s in m.steps:
            if s not in steps:
                steps.append(s)
    steps.sort(key=lambda s: s.action != "train")  # every training first: a sweep may read another run's vectors
    if not steps:
        return []
    base = load_base(ws.manifest.base)
    done = []
    datasets = None
    for s in steps:
        if s.action == "train":
            datasets = datasets or load_preference_pairs(ws)
            method = get_method(s.method)
            options = dict(s.settings)
            if "scorers" in method.settings:
                options["scorers"] = {v.name: v.scorer for v in ws.manifest.values}
            out = ws.inside("vectors", s.out)
            config = _train_config(ws)
            train_method(s.method, base, datasets, out, config, progress=progress is not None, store=ws.store,
                         run_config={"method": s.method, "values": list(datasets), "base": ws.manifest.base,
                                     "train_config": config.to_dict(), "out": f"vectors/{s.out}",
                                     "settings": options, "made_by": "report --train-missing"}, **options)
            done.append(f"trained {s.method} {s.settings or ''} into vectors/{s.out}")
        elif s.action == "sample":
            res = sampled_evaluation(ws, s.method, sampled_decoding(ws.manifest.decoding, SAMPLES), s.step,
                                     base=base, progress=progress)
            done.append(f"sampled {s.method} ({SAMPLES} responses per prompt) at step {s.step:g}: "
                        f"{len(res.candidate_ids)} candidates ({res.generated} generated)")
        else:
            groups = method_groups(ws, s.method, s.step, kind=s.kind, base=base)
            evaluate_base(ws, base, progress)
            res = sweep_groups(s.method, groups, chunk=8, progress=progress)
            done.append(f"swept {s.method}{' on the ' + s.kind if s.kind else ''} at step {s.step:g}: "
                        f"{len(res.candidate_ids)} candidates ({res.generated} generated)")
    return done
