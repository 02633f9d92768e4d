"""Build the embedded demo workspace from packaged parts only (no model hub).

Steps, each resumable (a finished step is skipped on re-run):
1. on-policy preference pairs: sample k responses per training prompt from the packaged SmolLM2 base,
   score them with each value's offline scorer, chosen = best, rejected = worst (ties skipped);
2. per run of DemoSpec.methods, in order: its vectors (LoRA, trl, through the same registry the CLI trains
   with; a run may be a registered method under its own name, e.g. `mva-alpha1` = `mva` at α = 1), then its
   candidates on the validation prompts (the base model's own candidate first);
   and, for a conditioned policy, its sampled evaluation (CRD, MI-EPO: `DemoSpec.sampled`);
3. the compared rows no run is named for (soup and dpo-<value> reuse mva-no-hsic's vectors and most of its grid;
   mod mixes the same vectors at decoding time over the same grid, candidates of its own at n + 1 rows per token).
Progress goes to `progress` (the CLI prints it) and, one line per step, to the `mva_core.demo` logger.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .conditioning import conditioning_from_meta
from .config import CPU_SMALL, DecodingConfig
from .data import load_prompts, write_jsonl
from .generate import generate_responses
from .methods import get_method, train_method
from .methods.mva import Decorrelation, share_first_vector
from .models import DEFAULT_BASE, BaseModel, load_base
from .pareto import preference_vectors
from .preference_data import load_preference_jsonl
from .metrics import compare_table, compare_with_intervals, crd_by_method, follows_p_by_method
from .results import load_table
from .scorers import get_scorer
from .search import search_method
from .store import prompts_hash
from .sweep import Evaluator, evaluate_base, method_groups, sampled_decoding, sampled_evaluation, sweep_groups
from .vectors import ADAPTER_FILE, META_FILE
from .workspace import (DEFAULT_WORKSPACE, DEMO_WORKSPACE, MANIFEST, REPO_ROOT, Manifest, ValueSpec, Workspace,
                        open_workspace)

Progress = Callable[[str, int, int], None]
log = logging.getLogger(__name__)

PROMPTS_DIR = REPO_ROOT / "data" / "prompts"
N_TRAIN_PROMPTS = 96  # prompts sampled for pairs: 48 gave a warmth vector that did not raise warmth on new prompts
SAMPLES_PER_PROMPT = 4
# The pairs' length: brevity has room to move. Batch 64: on 2 cores batched decoding is ~3x faster than at 8-16.
DEMO_DECODING = DecodingConfig(max_new_tokens=48, batch_size=64)
# The sampled evaluation of the conditioned policies, for CRD (MI-EPO; issue #28 item 2): 3 responses per prompt on
# the 40 validation prompts (120 reward vectors per p), at the pairs' temperature and top-p (near the greedy
# responses every other number is measured on). 3 samples, not more: on 2 CPU cores each policy's 11 p take
# 11 generate calls of 120 rows, and the samples add to the shipped store (each demo < 25 MB).
DEMO_SAMPLED = sampled_decoding(DEMO_DECODING, samples=3, temperature=0.7, top_p=0.95, seed=0)
# Keys of a run's settings in DemoSpec.methods that are not the method's settings.
RUN_KEYS = ("method", "train", "store")


@dataclass(frozen=True)
class DemoSpec:
    """One shipped demo workspace, built from packaged parts only: its values (each an offline proxy scorer), the
    methods trained and swept (in order, with their settings), the validation prompts and the grid step."""

    directory: str  # under data/
    values: tuple[ValueSpec, ...]
    # run name -> its settings: the method's settings fields, plus "method" (the registered method it runs, default
    # the run name: `mva-alpha1` = {"method": "mva", "alpha": 1.0}), "train" (TrainConfig fields over
    # demo_train_config) and "store": "float16" (its vectors kept in half precision: composition upcasts them to
    # float32 on load, `vectors.load_value_vector`; halves their size in the shipped demo). Its vectors go to
    # vectors/<run name>/ and the row is shown under that name (Workspace.compared_methods).
    methods: dict[str, dict]
    n_validation_prompts: int
    grid_step: float
    description: str
    open_method: str = "mva-no-hsic"  # the method the app opens on
    # method -> budget: an adaptive search run from scratch before that method's grid (the Sweep page shows its
    # hypervolume history; the grid then adds the points the search did not evaluate)
    searches: dict[str, int] = field(default_factory=dict)
    search_batch: int = 8  # points per surrogate fit of those searches (demo3's stored search ran at 8)
    without_grid: tuple[str, ...] = ()  # methods evaluated only where a search (or another row) put candidates
    # Another demo (by name) whose pairs and vectors this one starts from: its values' pair files, its sampled
    # responses (kept in those pairs) for the new values' pairs, and the vectors of the values they share, in
    # order (a sequential method's first vectors are the same run: same data, settings, seeds and earlier vectors;
    # training checks that and skips them). Saves 2 CPU cores the sampling and 4 of 6 trainings.
    starts_from: str | None = None
    decoding: DecodingConfig = field(default_factory=lambda: DEMO_DECODING)
    # the conditioned policies' candidates decoded once more with this sampled decoding, for CRD (None: not)
    sampled: DecodingConfig | None = None
    base: str = DEFAULT_BASE  # the base model (a tiny local one in tests)
    n_train_prompts: int = N_TRAIN_PROMPTS  # training prompts sampled for the pairs

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
            # float16 (like every run added since, "store"): the demo stays under 25 MB with the runs of issue #27/#28
            "dpo-seqt": {"store": "float16"},
            "dpo-lw": {"preferences": [[0.25, 0.75], [0.75, 0.25]], "store": "float16"},
            # issue #27 1b: the penalty on ΔW rows, unbiased HSIC, α = mva.DELTA_ALPHA (measured: data/README.md)
            "mva-delta": {"store": "float16"},
            # RiC: SFT, one epoch of the 283 pair responses at batch 2; quantile mapping within the 5-95 % quantile
            # range of the training scores (the full range asked for brevity z = 9.1, one outlier, at p_brevity >= 0.5)
            "ric": {"mapping": "quantile", "inner": [0.05, 0.95], "train": {"max_steps": 142}},
            "mo-odpo": {},  # one conditioned policy each, trained online on its own samples
            "mi-epo": {},  # the paper's β_w = 0.01: inert at this scale (data/README.md, bench/weight_consistency.py)
            # issue #27 item 2: β_w = 10 makes the weight-consistency term ~15 % of the DPO gradient
            "mi-epo-bw10": {"method": "mi-epo", "beta_w": 10.0, "store": "float16"},
            # the paper's Fig. 4 contrast and Fig. 7's α runs (α = 10 is `mva`)
            "ortho": {"store": "float16"},
            "mva-alpha1": {"method": "mva", "alpha": 1.0, "mode": "lora_A", "store": "float16"},
            "mva-alpha50": {"method": "mva", "alpha": 50.0, "mode": "lora_A", "store": "float16"},
        },  # modpo trains from the CLI; left out here to keep the build short on 2 cores
        sampled=DEMO_SAMPLED,
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


def run_method(run: str, settings: dict) -> str:
    """The registered method a run of DemoSpec.methods trains (its "method", else its own name)."""
    return str(settings.get("method", run))


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


def sample_k(base: BaseModel, prompts: list[str], k: int, seed: int, progress: Progress | None,
             max_new_tokens: int = 48) -> list[list[str]]:
    """k sampled responses per prompt (temperature 0.7, top-p 0.95), one batched pass. 0.7 keeps the samples
    near what greedy decoding (the dashboard's) produces, so the pairs are on-policy for it."""
    decoding = DecodingConfig(max_new_tokens=max_new_tokens, do_sample=True, temperature=0.7, top_p=0.95, seed=seed, batch_size=16)
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
    ws = Workspace.create(root, Manifest(base=spec.base, values=list(spec.values), C=1.0,
                                         prompts="prompts/validation.jsonl", decoding=spec.decoding,
                                         description=spec.description))
    base = load_base(ws.manifest.base)

    # 1. on-policy preference pairs
    pair_files = {v.name: root / "pairs" / f"{v.name}.jsonl" for v in ws.manifest.values}
    if spec.starts_from is not None and not all(f.is_file() for f in pair_files.values()):
        start_from(DEMOS[spec.starts_from].root, root, spec)
    if not all(f.is_file() for f in pair_files.values()):
        train_prompts = load_prompts(PROMPTS_DIR / "train.jsonl")[:spec.n_train_prompts]
        samples = sample_k(base, train_prompts, SAMPLES_PER_PROMPT, seed, progress, spec.decoding.max_new_tokens)
        for v in ws.manifest.values:
            write_jsonl(pair_files[v.name], onpolicy_pairs(train_prompts, v, samples))

    # 2. per run: its vectors (finished vectors are skipped), then its candidates
    datasets = {v.name: load_preference_jsonl(pair_files[v.name]) for v in ws.manifest.values}
    scorers = {v.name: v.scorer for v in ws.manifest.values}
    evaluate_base(ws, base, progress)
    runs = list(spec.methods.items())
    for n, (run, settings) in enumerate(runs):
        method = run_method(run, settings)
        _step(progress, f"train {run}" + ("" if method == run else f" ({method})"), n, len(runs))
        out = root / "vectors" / run
        options = {k: v for k, v in settings.items() if k not in RUN_KEYS}
        if "scorers" in get_method(method).settings:  # the reward models of the methods that score while training
            options["scorers"] = scorers
        config = replace(demo_train_config(seed), **settings.get("train", {}))
        _share_first_vector(root, runs[:n], run, method, options, datasets, config, base.fingerprint)
        if not (out.is_dir() and len(ws.adapter_dirs(run)) >= _expected_vectors(method, settings, len(datasets))):
            # recorded as a train run, with the pair files, so Diagnostics shows its curves and interference data
            train_method(method, base, datasets, out, config,
                         progress=progress is not None, store=ws.store, run_name=run, run_config={
                             "method": run, "trains": method, "values": list(datasets), "base": ws.manifest.base,
                             "seed": seed, "train_config": config.to_dict(), "out": str(out.relative_to(root)),
                             "settings": settings, "data": {v: {"file": str(pair_files[v].relative_to(root)),
                                                               "pairs": len(datasets[v])} for v in datasets}},
                         **options)
        link_duplicate_adapters(root, [r for r, _ in runs[:n + 1]])
        if settings.get("store") == "float16":
            store_float16(out)
        if get_method(method).restate(out, get_method(method).make_settings(options)):
            log.info("%s: evaluation settings restated (%s)", run, {k: options[k] for k in options if k != "scorers"})
        _evaluate_run(ws, spec, run, base, seed, progress)

    # 3. the compared rows no run is named for (soup, dpo-<value>: read from mva-no-hsic's vectors)
    rest = [m.name for m in ws.compared_methods() if m.name not in spec.methods]
    for n, name in enumerate(rest):
        _step(progress, f"evaluate {name}", n, len(rest))
        _evaluate_run(ws, spec, name, base, seed, progress)
    ws.store.forget_other_prompt_sets(prompts_hash(validation))  # a rebuild on new prompts ships only those
    _write_provenance(root, seed)
    _step(progress, "done", 1, 1)
    return ws


def _step(progress: Progress | None, what: str, done: int, total: int) -> None:
    log.info("[%d/%d] %s", done + 1, total, what)
    if progress:
        progress(what, done, total)


def _evaluate_run(ws: Workspace, spec: DemoSpec, name: str, base: BaseModel, seed: int,
                  progress: Progress | None) -> None:
    """Row `name`'s searches and grid (or a conditioned policy's evaluation preferences), its sampled evaluation
    when it is a conditioned policy and the spec asks for one; stale conditioned runs forgotten first. Each is a
    no-op when its candidates are stored."""
    rows = {m.name: m for m in ws.compared_methods()}
    if name not in rows:
        return
    conditioned = rows[name].kind.preference_in_prompt
    if conditioned:
        forgotten = forget_stale_runs(ws, name, [d for d in (spec.sampled,) if d is not None], base)
        if forgotten:
            log.info("%s: forgot %d candidates made with an earlier conditioning", name, forgotten)
    if name in spec.searches:
        store_runs = ws.store.runs()
        if not ((store_runs["kind"] == "search") & (store_runs["method"] == name) & (store_runs["status"] == "done")).any():
            search_method(ws, name, spec.searches[name], step=spec.grid_step, seed=seed, batch=spec.search_batch,
                          progress=progress)
    if name not in spec.without_grid:
        log.info("evaluate %s", name)
        sweep_groups(name, method_groups(ws, name, spec.grid_step, base=base), chunk=8, progress=progress)
    if conditioned and spec.sampled is not None:
        log.info("sampled evaluation of %s (%d samples per prompt)", name, spec.sampled.num_samples)
        sampled_evaluation(ws, name, spec.sampled, spec.grid_step, base=base, progress=progress)


def forget_stale_runs(ws: Workspace, name: str, decodings: list[DecodingConfig], base: BaseModel) -> int:
    """Forget the stored candidates of conditioned row `name` (its vectors, any p) that its policy would not make
    now: a conditioning it no longer has (RiC's targets restated, `TrainingMethod.restate`) makes the same vectors
    and p with other prompts, and the table would show both. Kept: the candidates of the workspace's decoding and of
    `decodings` (the sampled evaluation) at their stored p. Returns how many were forgotten."""
    row = ws.compared_method(name)
    if not row.kind.preference_in_prompt:
        return 0
    cand = ws.store.candidates()
    if cand.empty:
        return 0
    mine = cand[[json.loads(h) == list(row.vector_hashes) for h in cand["vector_hashes"]]]
    if mine.empty:
        return 0
    ev = Evaluator(ws, name, base=base)
    evaluators = [ev, *[ev.with_decoding(d) for d in decodings]]
    stale = [int(r.id) for r in mine.itertuples()
             if r.preference is None or r.key not in {e.spec(list(r.preference), "").key for e in evaluators}]
    return ws.store.forget_candidates(stale)


def _share_first_vector(root: Path, earlier: list[tuple[str, dict]], run: str, method: str, options: dict,
                        datasets: dict, config, base_fingerprint: str) -> None:
    """A sequential decorrelation run's first vector is plain DPO (Eq.14 sums over no earlier vector): link the one
    an earlier run of the spec trained on the same data and config (`mva.share_first_vector`) instead of training it
    again and shipping a copy."""
    variant = get_method(method)
    if not isinstance(variant, Decorrelation) or not datasets:
        return
    first = next(iter(datasets))
    out = root / "vectors" / run / first
    if out.exists():
        return
    settings = variant.make_settings(options)
    for other, other_settings in earlier:
        if isinstance(get_method(run_method(other, other_settings)), Decorrelation):
            if share_first_vector(root / "vectors" / other / first, out, datasets[first], config, base_fingerprint,
                                  settings, method):
                log.info("%s/%s: linked to %s/%s (the same plain-DPO first vector)", run, first, other, first)
                return


def link_duplicate_adapters(root: Path, runs: list[str]) -> int:
    """Replace every adapter file under vectors/<run>/ that is byte-identical to one of an earlier run (in `runs`
    order) by a relative symlink to it, so the shipped demo holds one copy (e.g. mva/warmth = mva-no-hsic/warmth:
    a sequential run's first vector is plain DPO). Returns how many files were linked."""
    seen: dict[str, Path] = {}
    linked = 0
    for run in runs:
        for f in sorted((root / "vectors" / run).glob(f"*/{ADAPTER_FILE}")):
            if f.is_symlink():
                continue
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
            if digest not in seen:
                seen[digest] = f
                continue
            tmp = f.with_name(f.name + ".link")
            tmp.unlink(missing_ok=True)
            os.symlink(os.path.relpath(seen[digest].resolve(), f.parent.resolve()), tmp)
            os.replace(tmp, f)
            linked += 1
            log.info("%s: linked to %s (identical bytes)", f.relative_to(root), seen[digest].relative_to(root))
    return linked


def store_float16(out: Path) -> int:
    """Keep the vectors under `out` (not links) in float16: each adapter file's float tensors cast to half precision,
    written in place atomically, and `stored_dtype: float16` in its mva_vector.json. Loading upcasts to float32
    (`vectors.load_value_vector`), so composition is float32 of the rounded weights (relative error ≤ 2^-11 per
    entry). Returns how many files were converted (0 when they already are)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    converted = 0
    for f in sorted(out.glob(f"*/{ADAPTER_FILE}")):
        if f.is_symlink():
            continue
        with safe_open(str(f), framework="pt") as fh:
            metadata = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        if all(t.dtype != torch.float32 for t in tensors.values()):
            continue
        tmp = f.with_name(f.name + ".partial")
        save_file({k: t.to(torch.float16) if t.dtype == torch.float32 else t for k, t in tensors.items()}, str(tmp),
                  metadata=metadata)
        tmp.chmod(0o644)  # readable like the vectors beside it
        os.replace(tmp, f)
        meta_file = f.parent / META_FILE
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            meta["stored_dtype"] = "float16"
            meta_file.write_text(json.dumps(meta, indent=2))
        converted += 1
    return converted


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
             ("mva-no-hsic", "soup"), ("mva-no-hsic", "dpo-seqt"),
             ("mva-delta", "mva"), ("mva-delta", "mva-no-hsic"), ("mva-delta", "soup"), ("mva", "ortho"),
             ("mva-alpha1", "mva"), ("mva-alpha50", "mva"), ("mi-epo-bw10", "mo-odpo"), ("mi-epo-bw10", "mi-epo")]
    lines += ["", "Paired hypervolume differences (same resampled prompts for both):", ""]
    for a, b in pairs:
        d = boot.difference(a, b)
        if d is None:
            continue
        lines.append(f"- {a} − {b}: ΔHV = {d.hv_diff.estimate:+.4f} [{d.hv_diff.low:+.4f}, {d.hv_diff.high:+.4f}], "
                     f"{a} ahead in {d.p_a_better:.0%} of resamples; {d.verdict(a, b)}.")
    lines += conditioned_report(ws, table)
    return "\n".join(lines)


def conditioned_report(ws: Workspace, table) -> list[str]:
    """Markdown lines on the conditioned policies: follows-p with its interval, the desired scores a RiC policy
    writes for each evaluation p, and how many responses two policies share (MI-EPO vs MO-ODPO: same prompt, same p,
    identical text)."""
    names = [m.name for m in ws.compared_methods() if m.kind.preference_in_prompt]
    names = [n for n in names if len(table.for_method(n))]
    if not names:
        return []
    lines = ["", "Conditioned policies (their 11 runs at MI-EPO's preferences; follows-p = Spearman of p and the "
             "realised trade-off, 95 % percentile interval over 1000 prompt resamples, seed 0):", ""]
    fp = follows_p_by_method(ws, table, names)
    for n in names:
        f = fp[n]
        lines.append(f"- {n}: follows-p " + ("—: " + f.why if f.value is None else
                                             f"{f.value:+.2f} [{f.interval.low:+.2f}, {f.interval.high:+.2f}] over "
                                             f"{f.runs} runs"))
    for n in names:
        meta_file = ws.root / "vectors" / n / "policy" / META_FILE
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        cond = meta.get("conditioning") or {}
        if cond.get("name") != "rewards-in-context":
            continue
        c = conditioning_from_meta(meta)
        targets = [f"{np.round(p, 1).tolist()} → {c.rewards(list(p), ws.value_names).tolist()}"
                   for p in preference_vectors(len(ws.value_names))]
        lines.append(f"- {n}'s desired scores (z units of its training scores; mapping {cond.get('mapping')}, inner "
                     f"quantile range {cond.get('inner', [0.0, 1.0])}): " + "; ".join(targets))
    for a, b in [("mi-epo", "mo-odpo"), ("mi-epo-bw10", "mo-odpo"), ("mi-epo-bw10", "mi-epo")]:
        same, total = identical_responses(ws, table, a, b)
        if total:
            lines.append(f"- {a} vs {b}: {same} of {total} responses identical (same prompt, same p)")
    return lines


def identical_responses(ws: Workspace, table, a: str, b: str) -> tuple[int, int]:
    """(identical, compared): the greedy responses of conditioned rows `a` and `b` to the same prompt at the same p."""
    def by_p(name: str) -> dict[tuple, int]:
        t = table.for_method(name)
        return {tuple(np.round(w, 9)): int(i) for w, i in zip(t.weights(), t.ids())} if len(t) else {}

    pa, pb = by_p(a), by_p(b)
    same = total = 0
    for p in sorted(set(pa) & set(pb)):
        ra = ws.store.responses([pa[p]]).sort_values("prompt_idx")["response"].tolist()
        rb = ws.store.responses([pb[p]]).sort_values("prompt_idx")["response"].tolist()
        same += sum(x == y for x, y in zip(ra, rb))
        total += min(len(ra), len(rb))
    return same, total
