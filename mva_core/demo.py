"""Build the embedded demo workspace from packaged parts only (no model hub).

Steps, each resumable (a finished step is skipped on re-run):
1. on-policy preference pairs: sample k responses per training prompt from the packaged SmolLM2 base,
   score them with each value's offline scorer, chosen = best, rejected = worst (ties skipped);
2. the vectors of every method in DEMO_METHODS (LoRA, trl), through the same registry the CLI trains with;
3. the base model's own candidate, then every compared method's candidates on the validation prompts
   (soup and dpo-<value> reuse mva-no-hsic's vectors and most of its grid; mod mixes the same vectors at
   decoding time over the same grid, candidates of its own at n + 1 rows per token).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .config import CPU_SMALL, DecodingConfig
from .data import load_prompts, write_jsonl
from .generate import generate_responses
from .methods import get_method, train_method
from .models import DEFAULT_BASE, BaseModel, load_base
from .preference_data import load_preference_jsonl
from .metrics import compare_table, compare_with_intervals, crd_by_method
from .results import load_table
from .scorers import get_scorer
from .search import search_method
from .store import prompts_hash
from .sweep import evaluate_base, method_groups, sweep_groups
from .workspace import (DEFAULT_WORKSPACE, DEMO_WORKSPACE, MANIFEST, REPO_ROOT, Manifest, ValueSpec, Workspace,
                        open_workspace)

Progress = Callable[[str, int, int], None]

PROMPTS_DIR = REPO_ROOT / "data" / "prompts"
N_TRAIN_PROMPTS = 96  # prompts sampled for pairs: 48 gave a warmth vector that did not raise warmth on new prompts
SAMPLES_PER_PROMPT = 4
# The pairs' length: brevity has room to move. Batch 64: on 2 cores batched decoding is ~3x faster than at 8-16.
DEMO_DECODING = DecodingConfig(max_new_tokens=48, batch_size=64)


@dataclass(frozen=True)
class DemoSpec:
    """One shipped demo workspace, built from packaged parts only: its values (each an offline proxy scorer), the
    methods trained and swept (in order, with their settings), the validation prompts and the grid step."""

    directory: str  # under data/
    values: tuple[ValueSpec, ...]
    methods: dict[str, dict]
    n_validation_prompts: int
    grid_step: float
    description: str
    open_method: str = "mva-no-hsic"  # the method the app opens on
    # method -> budget: an adaptive search run from scratch before that method's grid (the Sweep page shows its
    # hypervolume history; the grid then adds the points the search did not evaluate)
    searches: dict[str, int] = field(default_factory=dict)
    without_grid: tuple[str, ...] = ()  # methods evaluated only where a search (or another row) put candidates
    # Another demo (by name) whose pairs and vectors this one starts from: its values' pair files, its sampled
    # responses (kept in those pairs) for the new values' pairs, and the vectors of the values they share, in
    # order (a sequential method's first vectors are the same run: same data, settings, seeds and earlier vectors;
    # training checks that and skips them). Saves 2 CPU cores the sampling and 4 of 6 trainings.
    starts_from: str | None = None
    decoding: DecodingConfig = field(default_factory=lambda: DEMO_DECODING)

    @property
    def root(self) -> Path:
        return REPO_ROOT / "data" / self.directory


_WARMTH, _BREVITY = ValueSpec("warmth", "warmth"), ValueSpec("brevity", "brevity")
_RELEVANCE = ValueSpec("relevance", "relevance")
# soup and dpo-<value> read mva-no-hsic's vectors, so they cost only the candidates the grid does not already hold;
# mod reads them too and is swept as a compared method (no entry in `methods`: nothing to train), its own candidates.
DEMOS: dict[str, DemoSpec] = {
    "demo": DemoSpec(
        directory="demo", values=(_WARMTH, _BREVITY), n_validation_prompts=40, grid_step=0.25,
        methods={
            "mva-no-hsic": {},
            "mva": {"alpha": 10.0, "mode": "lora_A"},
            "dpo-seqt": {},
            "dpo-lw": {"preferences": [[0.25, 0.75], [0.75, 0.25]]},
            "mo-odpo": {},  # one conditioned policy each, trained online on its own samples
            "mi-epo": {},
            # RiC: SFT, one epoch of the 283 pair responses at batch 2; quantile mapping (linf asks for a rare
            # brevity outlier whenever p_brevity >= 0.1: brevity's z-scores are skewed, max 9.1)
            "ric": {"mapping": "quantile", "train": {"max_steps": 142}},
        },  # modpo trains from the CLI; left out here to keep the build short on 2 cores
        description=("Embedded demo: SmolLM2-135M-Instruct with LoRA value vectors trained on on-policy pairs "
                     "scored by offline proxy scorers (warmth = VADER sentiment, brevity = response length)."),
    ),
    "demo3": DemoSpec(
        directory="demo3", values=(_WARMTH, _BREVITY, _RELEVANCE), n_validation_prompts=16, grid_step=0.25,
        methods={"mva-no-hsic": {}, "mva": {"alpha": 10.0, "mode": "lora_A"}}, searches={"mva-no-hsic": 25},
        # 2 CPU cores: mva-no-hsic's 125-point grid would double the build; mod's (4 rows per token) would add ~4 times
        # mva's grid, so the 3-value demo leaves decode-time composition to the 2-value demo
        without_grid=("mva-no-hsic", "mod"),
        starts_from="demo",
        description=("3-value demo: SmolLM2-135M-Instruct, value vectors for warmth (VADER sentiment), brevity "
                     "(response length) and relevance (MiniLM prompt-response cosine), all offline proxy scorers; "
                     "mva on the [0, 1]^3 grid at step 0.25 (125 candidates); mva-no-hsic by a 25-evaluation "
                     "adaptive search, its soup on the simplex at step 0.25."),
        open_method="mva",
    ),
}
DEMO = DEMOS["demo"]  # the one data/workspace is copied from
DEMO_METHODS, DEMO_GRID_STEP, DEMO_METHOD = DEMO.methods, DEMO.grid_step, DEMO.open_method


def _expected_vectors(method: str, settings: dict, n_values: int) -> int:
    if "preferences" in settings:
        return len(settings["preferences"])
    return 1 if method == "dpo-seqt" or get_method(method).kind.preference_in_prompt else n_values


def demo_train_config(seed: int):
    """CPU_SMALL with 48 steps at lr 1e-3 (40 steps at 5e-4 left the loss at ~0.5 and the warmth vector did not
    raise warmth on the validation prompts)."""
    return replace(CPU_SMALL, learning_rate=1e-3, max_steps=48, seed=seed)


def onpolicy_pairs(prompts: list[str], value: ValueSpec, samples: list[list[str]]) -> list[dict]:
    """chosen = the best-scored sample, rejected = the worst, per prompt; prompts whose samples tie are skipped."""
    scorer = get_scorer(value.scorer)
    pairs = []
    for prompt, resp in zip(prompts, samples):
        s = scorer.score([prompt] * len(resp), resp)
        if not np.isfinite(s).all() or s.max() - s.min() < 1e-9:
            continue
        pairs.append({"prompt": prompt, "chosen": resp[int(np.argmax(s))], "rejected": resp[int(np.argmin(s))],
                      "chosen_score": float(s.max()), "rejected_score": float(s.min()), "value": value.name,
                      "scorer": value.scorer})
    return pairs


def pair_responses(files: list[Path]) -> dict[str, list[str]]:
    """The distinct sampled responses per prompt kept in preference-pair files (chosen and rejected alike)."""
    seen: dict[str, dict[str, None]] = {}
    for path in files:
        for pair in load_preference_jsonl(path):
            seen.setdefault(pair["prompt"], {}).update({pair["chosen"]: None, pair["rejected"]: None})
    return {prompt: list(kept) for prompt, kept in seen.items()}


def working_copy(name: str) -> Path:
    """Where the app opens shipped demo `name`: a git-ignored copy (data/workspace for `demo`, the default
    workspace; data/workspace-<name> for the others), made from data/<name> the first time, so evaluating in the
    app never changes the shipped files."""
    spec = DEMOS[name]
    if spec.root == DEMO_WORKSPACE:
        return open_workspace(DEFAULT_WORKSPACE).root  # its first open copies the shipped demo there
    path = REPO_ROOT / "data" / f"workspace-{name}"
    if not (path / MANIFEST).is_file():
        shutil.copytree(spec.root, path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("mva.sqlite-*"))
    return path


def start_from(source: Path, root: Path, spec: DemoSpec) -> None:
    """Seed demo `root` from the built demo at `source` (see DemoSpec.starts_from): the pair files of the values
    both have; for every other value, pairs chosen = best / rejected = worst among the distinct sampled responses
    the source's pairs kept per prompt (2-4 of the 4 samples: on-policy, the same samples); and the vectors of the
    shared methods for the leading values both have, in order."""
    shared = [v for v in spec.values if (source / "pairs" / f"{v.name}.jsonl").is_file()]
    (root / "pairs").mkdir(parents=True, exist_ok=True)
    for v in shared:
        shutil.copyfile(source / "pairs" / f"{v.name}.jsonl", root / "pairs" / f"{v.name}.jsonl")
    responses = pair_responses([source / "pairs" / f"{v.name}.jsonl" for v in shared])
    for v in spec.values:
        if v not in shared:
            write_jsonl(root / "pairs" / f"{v.name}.jsonl",
                        onpolicy_pairs(list(responses), v, list(responses.values())))
    lead = []
    for v in spec.values:  # the leading values both demos share, in order
        if v not in shared:
            break
        lead.append(v.name)
    for method in spec.methods:
        for value in lead:
            src, dst = source / "vectors" / method / value, root / "vectors" / method / value
            if src.is_dir() and not dst.exists():
                shutil.copytree(src, dst)


def sample_k(base: BaseModel, prompts: list[str], k: int, seed: int, progress: Progress | None) -> list[list[str]]:
    """k sampled responses per prompt (temperature 0.7, top-p 0.95), one batched pass. 0.7 keeps the samples
    near what greedy decoding (the dashboard's) produces, so the pairs are on-policy for it."""
    decoding = DecodingConfig(max_new_tokens=48, do_sample=True, temperature=0.7, top_p=0.95, seed=seed, batch_size=16)
    flat = generate_responses(base.model, base.tokenizer, [p for p in prompts for _ in range(k)], None, decoding,
                              progress=(lambda d, t: progress("sample pairs", d, t)) if progress else None)[0]
    return [flat[i * k:(i + 1) * k] for i in range(len(prompts))]


def build_demo(root: Path | None = None, seed: int = 0, progress: Progress | None = None,
               spec: DemoSpec = DEMO) -> Workspace:
    """Build (or finish building) one demo workspace at `root` (default data/<spec.directory>)."""
    root = Path(root) if root is not None else spec.root
    root.mkdir(parents=True, exist_ok=True)
    validation = load_prompts(PROMPTS_DIR / "validation.jsonl")[:spec.n_validation_prompts]
    write_jsonl(root / "prompts" / "validation.jsonl", [{"prompt": p} for p in validation])
    # The manifest is the spec's: a rebuild with changed prompts or decoding evaluates anew, vectors are kept.
    ws = Workspace.create(root, Manifest(base=DEFAULT_BASE, values=list(spec.values), C=1.0,
                                         prompts="prompts/validation.jsonl", decoding=spec.decoding,
                                         description=spec.description))
    base = load_base(ws.manifest.base)

    # 1. on-policy preference pairs
    pair_files = {v.name: root / "pairs" / f"{v.name}.jsonl" for v in ws.manifest.values}
    if spec.starts_from is not None and not all(f.is_file() for f in pair_files.values()):
        start_from(DEMOS[spec.starts_from].root, root, spec)
    if not all(f.is_file() for f in pair_files.values()):
        train_prompts = load_prompts(PROMPTS_DIR / "train.jsonl")[:N_TRAIN_PROMPTS]
        samples = sample_k(base, train_prompts, SAMPLES_PER_PROMPT, seed, progress)
        for v in ws.manifest.values:
            write_jsonl(pair_files[v.name], onpolicy_pairs(train_prompts, v, samples))

    # 2. every demo method's vectors (each step resumable: finished vectors are skipped)
    datasets = {v.name: load_preference_jsonl(pair_files[v.name]) for v in ws.manifest.values}
    scorers = {v.name: v.scorer for v in ws.manifest.values}
    for n, (method, settings) in enumerate(spec.methods.items()):
        if progress:
            progress(f"train {method}", n, len(spec.methods))
        out = root / "vectors" / method
        if out.is_dir() and len(ws.adapter_dirs(method)) >= _expected_vectors(method, settings, len(datasets)):
            continue  # built: no empty "train" run in the store
        options = {k: v for k, v in settings.items() if k != "train"}
        if "scorers" in get_method(method).settings:  # the reward models of the methods that score while training
            options["scorers"] = scorers
        config = replace(demo_train_config(seed), **settings.get("train", {}))
        # recorded as a train run, with the pair files, so Diagnostics shows its curves and interference data
        train_method(method, base, datasets, out, config,
                     progress=progress is not None, store=ws.store, run_config={
                         "method": method, "values": list(datasets), "base": ws.manifest.base, "seed": seed,
                         "train_config": config.to_dict(), "out": str(out.relative_to(root)),
                         "settings": settings, "data": {v: {"file": str(pair_files[v].relative_to(root)),
                                                           "pairs": len(datasets[v])} for v in datasets}},
                     **options)

    # 3. base candidate + every method's candidates
    evaluate_base(ws, base, progress)
    for method, budget in spec.searches.items():
        runs = ws.store.runs()
        if not ((runs["kind"] == "search") & (runs["method"] == method) & (runs["status"] == "done")).any():
            search_method(ws, method, budget, step=spec.grid_step, seed=seed, progress=progress)
    for m in ws.compared_methods():
        if m.name in spec.without_grid:
            continue
        sweep_groups(m.name, method_groups(ws, m.name, spec.grid_step, base=base), chunk=8, progress=progress)
    ws.store.forget_other_prompt_sets(prompts_hash(validation))  # a rebuild on new prompts ships only those
    _write_provenance(root, seed)
    return ws


def _write_provenance(root: Path, seed: int) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in {".jsonl", ".safetensors", ".json"} and p.name != "PROVENANCE.json")
    digest = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in files}
    (root / "PROVENANCE.json").write_text(json.dumps({
        "command": "python -m mva_core demo build", "seed": seed, "files": digest}, indent=2))


def pair_response_stats(ws: Workspace) -> list[str]:
    """Markdown table: every value's scorer on the distinct sampled base responses in the preference pairs
    (pairs/<value>.jsonl): mean ± sd, [min, max] and the correlation with every other value (how much the values
    conflict, or not, before any training)."""
    kept = pair_responses([f for v in ws.manifest.values if (f := ws.root / "pairs" / f"{v.name}.jsonl").is_file()])
    if not kept:
        return []
    prompts = [p for p, rs in kept.items() for _ in rs]
    responses = [r for rs in kept.values() for r in rs]
    S = np.stack([get_scorer(v.scorer).score(prompts, responses) for v in ws.manifest.values], axis=1)
    corr = np.corrcoef(S, rowvar=False)
    names = ws.value_names
    lines = [f"On the {len(responses)} distinct sampled base responses in the preference pairs:", "",
             "| scorer | mean ± sd | [min, max] | " + " | ".join(f"corr. with {v}" for v in names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for i, v in enumerate(ws.manifest.values):
        col = S[:, i]
        lines.append(f"| {v.name} ({v.scorer}) | {col.mean():.3f} ± {col.std():.3f} | [{col.min():.3f}, "
                     f"{col.max():.3f}] | " + " | ".join(f"{corr[i, j]:+.2f}" for j in range(len(names))) + " |")
    return lines


def demo_report(ws: Workspace) -> str:
    """The demo's measured numbers as Markdown (for data/README.md and the closing note), from the store only:
    each value's spread and the values' correlation on the base model's responses and on each single-value
    vector's responses (per prompt), each method's front size / hypervolume / MIP with one shared reference
    point, and whether MVA's extrapolated front beats the SOUP interpolation."""
    table = load_table(ws)
    values, scorers = ws.value_names, [v.scorer for v in ws.manifest.values]
    lines = [f"Validation prompts: {len(ws.prompts())}; decoding: {ws.manifest.decoding.to_dict()}", ""]
    lines += pair_response_stats(ws) + [""]

    def per_prompt(cid: int) -> pd.DataFrame:
        return ws.store.responses([cid])[scorers].astype(float)

    singles = {"base": table.base_id()}
    for v in values:
        rows = table.for_method(f"dpo-{v}")
        if len(rows):
            singles[f"dpo-{v} (w=1)"] = rows.ids()[0]
    value_pairs = [(i, j) for i in range(len(values)) for j in range(i + 1, len(values))]
    lines += ["| responses of | " + " | ".join(f"{v} mean ± sd [min, max]" for v in values)
              + "".join(f" | corr({values[i]}, {values[j]})" for i, j in value_pairs) + " |",
              "|---|" + "---|" * (len(values) + len(value_pairs))]
    for label, cid in singles.items():
        s = per_prompt(int(cid))
        cells = [f"{s[c].mean():.3f} ± {s[c].std():.3f} [{s[c].min():.3f}, {s[c].max():.3f}]" for c in scorers]
        corrs = [float(np.corrcoef(s[scorers[i]], s[scorers[j]])[0, 1]) for i, j in value_pairs]
        lines.append(f"| {label} | " + " | ".join(cells) + "".join(f" | {c:+.2f}" for c in corrs) + " |")
    metrics, ref = compare_table(table)  # the Compare page's numbers: one definition of each metric
    boot = compare_with_intervals(ws, table, list(metrics["method"]), ref)
    lines += ["", f"Shared reference point (z units, per-value minimum over all candidates and the base model): "
              f"{np.round(ref, 3).tolist()}. Intervals: 95 % BCa bootstrap (bias-corrected and accelerated) over the "
              f"{len(ws.prompts())} prompts ({boot.n_resamples} resamples, seed {boot.seed}; z-scores and fronts "
              f"recomputed per resample); paired differences: 95 % percentile intervals over the same resamples.",
              "", "| method | candidates | front | hypervolume [95 % CI] | MIP [95 % CI] | CRD [95 % CI] |", "|---|---|---|---|---|---|"]
    crd = crd_by_method(ws, table, list(metrics["method"]))  # the Compare page's and compare --json's CRD
    for _, row in metrics.iterrows():
        m, c = boot.methods[row["method"]], crd[row["method"]]
        lines.append(f"| {row['method']} | {row['candidates']} | {row['front size']} | {row['hypervolume']:.4f} "
                     f"[{m.hv.low:.4f}, {m.hv.high:.4f}] | {row['MIP']:.4f} [{m.mip.low:.4f}, {m.mip.high:.4f}] | "
                     f"{'—' if c.value is None else format(c.value, '.4g')}"
                     f"{'' if c.interval is None else f' [{c.interval.low:.4g}, {c.interval.high:.4g}]'} |")
    fallback = [f"{name} {label}" for name, m in boot.methods.items()
                for label, iv in (("HV", m.hv), ("MIP", m.mip), ("CRD", crd[name].interval))
                if iv is not None and np.isfinite(iv.low) and iv.method != "BCa"]
    if fallback:
        lines += ["", "Percentile instead of BCa (BCa undefined: constant resamples or an estimate outside them): "
                  + ", ".join(fallback) + "."]
    if any(c.value is None for c in crd.values()):
        lines += ["", "CRD —: " + "; ".join(sorted({c.why for c in crd.values() if c.value is None})) + "."]
    pairs = [("mva", "soup"), ("mva", "mva-no-hsic"), ("mva", "mi-epo"), ("mva", "ric"), ("mi-epo", "ric"),
             ("mva-no-hsic", "soup"), ("mva-no-hsic", "dpo-seqt")]
    lines += ["", "Paired hypervolume differences (same resampled prompts for both):", ""]
    for a, b in pairs:
        d = boot.difference(a, b)
        if d is None:
            continue
        lo, hi = d.hv_diff.low, d.hv_diff.high
        verdict = (f"{a} is ahead" if lo > 0 else f"{b} is ahead" if hi < 0 else "within noise: the interval holds 0")
        lines.append(f"- {a} − {b}: ΔHV = {d.hv_diff.estimate:+.4f} [{lo:+.4f}, {hi:+.4f}], "
                     f"{a} ahead in {d.p_a_better:.0%} of resamples; {verdict}.")
    return "\n".join(lines)
