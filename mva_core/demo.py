"""Build the embedded demo workspace from packaged parts only (no model hub).

Steps, each resumable (a finished step is skipped on re-run):
1. on-policy preference pairs: sample k responses per training prompt from the packaged SmolLM2 base,
   score them with each value's offline scorer, chosen = best, rejected = worst (ties skipped);
2. one DPO value vector per value (LoRA, trl) — independent vectors, so the composed grid is the
   `mva-no-hsic` row of the method table;
3. the base model's own candidate, then the method's weight grid on the validation prompts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from .config import DecodingConfig
from .data import load_prompts, read_jsonl, write_jsonl
from .generate import generate_responses
from .models import DEFAULT_BASE, BaseModel, load_base
from .scorers import get_scorer
from .workspace import DEMO_WORKSPACE, REPO_ROOT, MANIFEST, Manifest, ValueSpec, Workspace

Progress = Callable[[str, int, int], None]

DEMO_VALUES = [ValueSpec("warmth", "warmth"), ValueSpec("brevity", "brevity")]
DEMO_METHOD = "mva-no-hsic"
PROMPTS_DIR = REPO_ROOT / "data" / "prompts"
N_TRAIN_PROMPTS = 48  # prompts sampled for pairs (first slice: small enough for ~10 min on 2 cores)
N_VALIDATION_PROMPTS = 8  # the live dashboard answers on these
SAMPLES_PER_PROMPT = 4
DEMO_GRID_STEP = 0.25


def onpolicy_pairs(base: BaseModel, prompts: list[str], value: ValueSpec, samples: list[list[str]]) -> list[dict]:
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


def sample_k(base: BaseModel, prompts: list[str], k: int, seed: int, progress: Progress | None) -> list[list[str]]:
    """k sampled responses per prompt (temperature 1.0, top-p 0.95), one batched pass."""
    decoding = DecodingConfig(max_new_tokens=48, do_sample=True, temperature=1.0, top_p=0.95, seed=seed, batch_size=16)
    flat = generate_responses(base.model, base.tokenizer, [p for p in prompts for _ in range(k)], None, decoding,
                              progress=(lambda d, t: progress("sample pairs", d, t)) if progress else None)[0]
    return [flat[i * k:(i + 1) * k] for i in range(len(prompts))]


def build_demo(root: Path | None = None, seed: int = 0, progress: Progress | None = None) -> Workspace:
    from .methods.dpo import CPU_SMALL, load_preference_jsonl, train_dpo_vector
    from .sweep import Evaluator, evaluate_base, sweep

    root = Path(root) if root is not None else DEMO_WORKSPACE
    root.mkdir(parents=True, exist_ok=True)
    validation = load_prompts(PROMPTS_DIR / "validation.jsonl")[:N_VALIDATION_PROMPTS]
    write_jsonl(root / "prompts" / "validation.jsonl", [{"prompt": p} for p in validation])
    if not (root / MANIFEST).is_file():
        Workspace.create(root, Manifest(
            base=DEFAULT_BASE, values=list(DEMO_VALUES), C=1.0, prompts="prompts/validation.jsonl",
            decoding=DecodingConfig(max_new_tokens=32, batch_size=16),
            description=("Embedded demo: SmolLM2-135M-Instruct with two DPO value vectors trained on on-policy "
                         "pairs scored by offline proxy scorers (warmth = VADER sentiment, brevity = response length)."),
        ))
    ws = Workspace(root)
    base = load_base(ws.manifest.base)

    # 1. on-policy preference pairs
    pair_files = {v.name: root / "pairs" / f"{v.name}.jsonl" for v in ws.manifest.values}
    if not all(f.is_file() for f in pair_files.values()):
        train_prompts = load_prompts(PROMPTS_DIR / "train.jsonl")[:N_TRAIN_PROMPTS]
        samples = sample_k(base, train_prompts, SAMPLES_PER_PROMPT, seed, progress)
        for v in ws.manifest.values:
            write_jsonl(pair_files[v.name], onpolicy_pairs(base, train_prompts, v, samples))

    # 2. one DPO value vector per value
    for i, v in enumerate(ws.manifest.values):
        out = root / "vectors" / DEMO_METHOD / v.name
        if (out / "adapter_config.json").is_file():
            continue
        pairs = load_preference_jsonl(pair_files[v.name])
        train_dpo_vector(base.path, pairs, v.name, out, replace(CPU_SMALL, seed=seed + i), base.fingerprint,
                         method=DEMO_METHOD)
        if progress:
            progress("train vectors", i + 1, len(ws.manifest.values))

    # 3. base candidate + grid sweep
    evaluate_base(ws, base, progress)
    ev = Evaluator(ws, DEMO_METHOD, base=base)
    sweep(ev, ws.space(step=DEMO_GRID_STEP).grid(), chunk=4, progress=progress)
    _write_provenance(root, seed)
    return ws


def _write_provenance(root: Path, seed: int) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in {".jsonl", ".safetensors", ".json"} and p.name != "PROVENANCE.json")
    digest = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in files}
    (root / "PROVENANCE.json").write_text(json.dumps({
        "command": "python -m mva_core demo build", "seed": seed, "files": digest}, indent=2))
