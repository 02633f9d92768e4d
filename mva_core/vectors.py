"""Value vectors on disk: a standard PEFT LoRA adapter directory plus our metadata.

A value vector dir holds `adapter_config.json` + `adapter_model.safetensors` (loadable by plain
`PeftModel.from_pretrained`) and `mva_vector.json` (value name, method, base model id and fingerprint,
training config). Pickle adapters (`adapter_model.bin`) are refused unless `allow_pickle=True`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import load_file, save_file

from .config import META_FILE
from .errors import MVAError

ADAPTER_FILE = "adapter_model.safetensors"
_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.weight$")


class VectorError(MVAError, ValueError):
    """A value vector is missing, corrupt, unsafe, or does not fit the base model / the other vectors."""


@dataclass
class LoraLayer:
    """One target linear layer of a value vector: ΔW = scaling · B A (see compose.delta_weight)."""

    A: torch.Tensor  # (r, d_in)
    B: torch.Tensor  # (d_out, r)
    scaling: float  # lora_alpha / r  (or lora_alpha / sqrt(r) with rsLoRA)

    def __post_init__(self) -> None:
        assert self.A.dim() == 2 and self.B.dim() == 2 and self.A.shape[0] == self.B.shape[1], (
            f"LoRA shapes A{tuple(self.A.shape)} B{tuple(self.B.shape)} do not chain"
        )

    @property
    def shape(self) -> tuple[int, int]:
        """(d_out, d_in) of the layer this adapts."""
        return (self.B.shape[0], self.A.shape[1])


@dataclass
class ValueVector:
    """θ_i of MVA Eq.15: the LoRA adapter trained for one value."""

    value: str
    layers: dict[str, LoraLayer]  # module name in the base model -> factors
    method: str = "unknown"
    base_model: str = ""
    base_fingerprint: str = ""
    hash: str = ""  # sha256 of the adapter weights file: identifies the vector in the store
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def target_modules(self) -> list[str]:
        return sorted({name.rsplit(".", 1)[-1] for name in self.layers})


def _scaling(module: str, r: int, cfg: dict[str, Any]) -> float:
    alpha = float(cfg.get("lora_alpha", r))
    for pattern, a in (cfg.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?{pattern}$", module):
            alpha = float(a)
    return alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r


def file_hash(path: Path) -> str:
    """Short sha256 of a file's bytes, read once per (path, size, mtime): listing a workspace's methods on every
    Streamlit rerun reads no adapter file that has not changed (~1 GB per rerun for r = 64 adapters of a 7B model)."""
    st = Path(path).stat()
    return _file_hash(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:  # size and mtime only key the cache
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def adapter_sha256(adapter_dir: str | Path) -> str:
    """sha256 over a PEFT adapter dir's config and weight files (names and bytes)."""
    h = hashlib.sha256()
    for f in sorted(Path(adapter_dir).glob("adapter_*")):
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def load_value_vector(path: str | Path, allow_pickle: bool = False) -> ValueVector:
    """Read one value vector dir. Raises VectorError naming the file and the fix."""
    path = Path(path)
    cfg_file = path / "adapter_config.json"
    if not path.is_dir():
        raise VectorError(f"value vector dir {path} does not exist; pass the directory that holds adapter_config.json")
    if not cfg_file.is_file():
        raise VectorError(f"{cfg_file} is missing; {path} is not a PEFT LoRA adapter dir")
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("peft_type", "LORA") != "LORA":
        raise VectorError(f"{cfg_file}: peft_type={cfg.get('peft_type')!r}; only LoRA adapters are value vectors")
    if cfg.get("fan_in_fan_out"):
        raise VectorError(f"{cfg_file}: fan_in_fan_out adapters (GPT-2 Conv1D) are not supported yet")
    weights_file = path / ADAPTER_FILE
    if weights_file.is_file():
        try:
            tensors = load_file(str(weights_file))
        except Exception as exc:  # safetensors raises its own error types for truncated/corrupt headers
            raise VectorError(
                f"{weights_file} is corrupt or truncated ({exc}); re-export or re-train this value vector"
            ) from exc
    elif (path / "adapter_model.bin").is_file():
        if not allow_pickle:
            raise VectorError(
                f"{path / 'adapter_model.bin'} is a pickle checkpoint, which can run arbitrary code when loaded; "
                "convert it to safetensors, or pass --allow-pickle if you trust its source"
            )
        weights_file = path / "adapter_model.bin"
        tensors = torch.load(weights_file, map_location="cpu", weights_only=True)
    else:
        raise VectorError(f"{path} has no {ADAPTER_FILE}; the adapter weights are missing")

    factors: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        m = _KEY.match(key)
        if m is None:
            raise VectorError(
                f"{weights_file}: tensor {key!r} is not a LoRA A/B matrix of a linear layer; "
                "only LoRA on nn.Linear modules is supported"
            )
        factors.setdefault(m["module"], {})[m["ab"]] = tensor.to(torch.float32)
    layers = {}
    for module, ab in sorted(factors.items()):
        if set(ab) != {"A", "B"}:
            raise VectorError(f"{weights_file}: module {module!r} has lora_{next(iter(ab))} but not its pair")
        if ab["A"].shape[0] != ab["B"].shape[1]:
            raise VectorError(
                f"{weights_file}: {module}.lora_A is {tuple(ab['A'].shape)} but lora_B is {tuple(ab['B'].shape)}; ranks differ"
            )
        layers[module] = LoraLayer(ab["A"], ab["B"], _scaling(module, ab["A"].shape[0], cfg))
    if not layers:
        raise VectorError(f"{weights_file} holds no LoRA tensors")
    meta = json.loads((path / META_FILE).read_text()) if (path / META_FILE).is_file() else {}
    return ValueVector(
        value=meta.get("value", path.name),
        layers=layers,
        method=meta.get("method", "unknown"),
        base_model=meta.get("base_model", cfg.get("base_model_name_or_path") or ""),
        base_fingerprint=meta.get("base_fingerprint", ""),
        hash=file_hash(weights_file),
        path=path,
        meta=meta,
    )


def check_compatible(vectors: Sequence[ValueVector], base_model: torch.nn.Module | None = None,
                     base_fingerprint: str | None = None) -> None:
    """Vectors must share the base model and agree on every target layer's shape (and fit the base, if given)."""
    if not vectors:
        raise VectorError("no value vectors given; pass at least one adapter")
    names = [v.value for v in vectors]
    if len(set(names)) != len(names):
        raise VectorError(f"value names {names} repeat; each value vector must be for a different value")
    shapes: dict[str, tuple[tuple[int, int], str]] = {}
    for v in vectors:
        for module, layer in v.layers.items():
            if module in shapes and shapes[module][0] != layer.shape:
                raise VectorError(
                    f"tensor {module}: value vector {v.value!r} has shape (d_out, d_in)={layer.shape} but "
                    f"{shapes[module][1]!r} has {shapes[module][0]}; the vectors were trained on different bases"
                )
            shapes.setdefault(module, (layer.shape, v.value))
    if base_model is not None:
        for module, (shape, value) in shapes.items():
            try:
                linear = base_model.get_submodule(module)
            except AttributeError:
                raise VectorError(f"tensor {module} of value vector {value!r} names no module of the base model; "
                                  "the adapter belongs to another architecture") from None
            if not isinstance(linear, torch.nn.Linear) or tuple(linear.weight.shape) != shape:
                got = tuple(linear.weight.shape) if hasattr(linear, "weight") else type(linear).__name__
                raise VectorError(f"tensor {module}: value vector {value!r} expects a linear layer of shape {shape}, "
                                  f"the base model has {got}; the adapter belongs to another base")
    # shapes first: a shape error names the tensor, the more useful message when both differ
    prints = {v.base_fingerprint for v in vectors if v.base_fingerprint}
    if base_fingerprint and prints and prints != {base_fingerprint}:
        odd = next(v for v in vectors if v.base_fingerprint and v.base_fingerprint != base_fingerprint)
        raise VectorError(
            f"value vector {odd.value!r} ({odd.path}) was trained on base {odd.base_model!r} "
            f"(fingerprint {odd.base_fingerprint}), not on the loaded base (fingerprint {base_fingerprint}); "
            "load the base it was trained on"
        )
    if len(prints) > 1:
        raise VectorError(f"value vectors were trained on different base models (fingerprints {sorted(prints)}); "
                          "compose only vectors of one base")



def load_value_vectors(paths: Sequence[str | Path], allow_pickle: bool = False) -> list[ValueVector]:
    """Load several vectors and check they can be composed."""
    vectors = [load_value_vector(p, allow_pickle=allow_pickle) for p in paths]
    check_compatible(vectors)
    return vectors


def save_value_vector(path: Path, vector: ValueVector, base_model_name: str, extra_meta: dict[str, Any] | None = None) -> None:
    """Write a PEFT-loadable adapter dir for `vector` (scaling folded into B, lora_alpha = r)."""
    path.mkdir(parents=True, exist_ok=True)
    ranks = {layer.A.shape[0] for layer in vector.layers.values()}
    r = max(ranks)
    tensors, rank_pattern, alpha_pattern = {}, {}, {}
    for module, layer in vector.layers.items():
        tensors[f"base_model.model.{module}.lora_A.weight"] = layer.A.contiguous()
        # Fold the scaling into B so that every layer's scaling is exactly lora_alpha / r = 1.
        tensors[f"base_model.model.{module}.lora_B.weight"] = (layer.B * layer.scaling).contiguous()
        rk = layer.A.shape[0]
        if rk != r:
            rank_pattern[re.escape(module)] = rk
            alpha_pattern[re.escape(module)] = rk
    save_file(tensors, str(path / ADAPTER_FILE))
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model_name,
        "r": r, "lora_alpha": r, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
        "target_modules": vector.target_modules, "rank_pattern": rank_pattern, "alpha_pattern": alpha_pattern,
        "use_rslora": False, "inference_mode": True,
    }
    (path / "adapter_config.json").write_text(json.dumps(config, indent=2))
    meta = {"value": vector.value, "method": vector.method, "base_model": vector.base_model,
            "base_fingerprint": vector.base_fingerprint, **(extra_meta or {})}
    (path / META_FILE).write_text(json.dumps(meta, indent=2))
