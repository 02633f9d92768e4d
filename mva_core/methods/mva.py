"""Value Decorrelation Training, MVA Eq.14, and its two contrasts (DESIGN §1 method table).

Vectors are trained in order; the i-th minimises

    L_DPO(π_base + θ_i; D_i) + α Σ_{j<i} P(θ_i, θ_j)                                   (MVA Eq.14)

with the earlier θ_j frozen (read from their saved dirs, never handed to the optimizer), P summed over the
target layers both vectors adapt, and
- `mva`          P = HSIC(θ_i, θ_j) (Eq.6, `mva_core.hsic`), samples per layer = rows of lora_A or of ΔW;
                 `lora_A` (the default, as the paper's released code) is an approximation that depends on how
                 LoRA labels its rank components: permuting rows of A_i with columns of B_i leaves ΔW_i, so the
                 model, bit-identical but moves P, so training can lower P by reordering rows; `delta` is
                 invariant to that relabelling (`mva_core.hsic` module docstring);
- `mva-no-hsic`  the same code with α = 0: independent per-value DPO vectors (paper "w/o HSIC");
- `ortho`        P = ‖ΔW_iᵀ ΔW_j‖²_F, an orthogonality penalty (the paper's contrast to HSIC);
- `mva-delta`    P = HSIC on the rows of ΔW with the unbiased estimator (issue #27 item 1b): a property of the
                 vectors, not of LoRA's row labels, and zero in expectation for independent vectors.
The four are one method class, `Decorrelation`, with different `DecorrelationSettings` defaults (mergekit's
variants): `penalty` and `alpha` are settings, not method names.
The term is added in a `trl.DPOTrainer` subclass that overrides `compute_loss` only (and `log`, to keep the
per-step values); the unweighted Σ_j P is logged each step and stored as `<penalty>_terms` in mva_vector.json.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from ..config import ConfigError, TrainConfig
from ..hsic import layer_kernels, vector_hsic
from ..vectors import ADAPTER_FILE, META_FILE, LoraLayer, VectorError, load_value_vector
from ..errors import TrainingError
from ..kinds import EXTRAPOLATION
from ..method_settings import (  # noqa: F401  (DELTA_ALPHA and the classes: their old home, still importable)
    DELTA_ALPHA, DecorrelationSettings, DeltaSettings, Estimator, IndependentSettings, Kernel, OrthoSettings, Penalty,
    SampleMode, check_decorrelation,
)
from ..preference_data import check_pairs, pairs_sha256
from .base import Datasets, TrainingMethod, available_methods, get_method, register_method
from .dpo import train_dpo_vector
from .harness import OutputExistsError

MVA_PAPER = "https://arxiv.org/abs/2511.17579"
Layers = Mapping[str, LoraLayer]  # module name in the base model -> LoRA factors, as ValueVector.layers
# peft parameter names: base_model.model.<module>.lora_A.<adapter>.weight (PeftModel over a causal LM)
_PEFT_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])\.(?P<adapter>[^.]+)\.weight$")


# ---- Penalties P(θ_i, θ_j), each summed over the shared target layers ----

def orthogonality(theta_i_layers: Layers, theta_j_layers: Layers) -> torch.Tensor:
    """Σ_layers ‖ΔW_iᵀ ΔW_j‖²_F, with ΔW = s · B A, computed on the rank-sized factors.

    ΔW_iᵀ ΔW_j = s_i s_j A_iᵀ (B_iᵀ B_j) A_j is (d_in, d_in); its squared norm equals
    s_i² s_j² tr(Mᵀ (A_i A_iᵀ) M (A_j A_jᵀ)) with M = B_iᵀ B_j, so only (r, r) products are formed.
    """
    shared = sorted(set(theta_i_layers) & set(theta_j_layers))
    if not shared:
        raise VectorError("the two value vectors share no target layer, so their orthogonality is undefined; "
                          "train them with the same target_modules")
    terms = []
    for name in shared:
        li, lj = theta_i_layers[name], theta_j_layers[name]
        assert li.shape == lj.shape, f"{name}: layers of shape {li.shape} and {lj.shape}"
        M = li.B.T @ lj.B.to(li.B.dtype)  # (r_i, r_j)
        Gi = li.A @ li.A.T  # (r_i, r_i)
        Gj = lj.A.to(li.A.dtype) @ lj.A.T.to(li.A.dtype)  # (r_j, r_j)
        terms.append((li.scaling * lj.scaling) ** 2 * torch.trace(M.T @ Gi @ M @ Gj))
    return torch.stack(terms).sum()


def penalty_against(theta_j_layers: Layers, penalty: Penalty, mode: SampleMode = "lora_A",
                    kernel: Kernel = "gaussian", sigma: float | None = None,
                    estimator: Estimator = "biased") -> Callable[[Layers], torch.Tensor]:
    """θ_i ↦ P(θ_i, θ_j) for a frozen θ_j. For HSIC, θ_j's kernel matrices are computed here once: they are
    the same at every step (in `delta` mode they are most of the penalty's cost)."""
    if penalty == "ortho":
        return lambda theta_i_layers: orthogonality(theta_i_layers, theta_j_layers)
    kernels_j = layer_kernels(theta_j_layers, mode, kernel, sigma)
    return lambda theta_i_layers: vector_hsic(theta_i_layers, theta_j_layers, mode, kernel, sigma, kernels_j=kernels_j,
                                              estimator=estimator)


def adapter_layers(model: torch.nn.Module, scaling: float, adapter: str | None = None) -> dict[str, LoraLayer]:
    """The trainable adapter's factors of a peft model, by module name; the tensors are the live parameters."""
    adapter = adapter or getattr(model, "active_adapter", None) or "default"
    factors: dict[str, dict[str, torch.Tensor]] = {}
    for name, param in model.named_parameters():
        m = _PEFT_KEY.match(name)
        if m and m["adapter"] == adapter:
            factors.setdefault(m["module"], {})[m["ab"]] = param
    assert factors, f"the model has no LoRA parameters for adapter {adapter!r}"
    return {module: LoraLayer(ab["A"], ab["B"], scaling) for module, ab in factors.items()}


# ---- The trainer: DPO + α Σ_j P ----

@functools.cache
def decorrelation_trainer() -> type:
    """The `trl.DPOTrainer` subclass for Eq.14 (built on first use: importing trl takes seconds)."""
    from trl import DPOTrainer

    class ValueDecorrelationTrainer(DPOTrainer):
        """trl's DPOTrainer with α Σ_{j<i} P(θ_i, θ_j) added to the loss (MVA Eq.14).

        The earlier vectors are plain tensors (no gradient, not model parameters), so the optimizer cannot move
        them. With α = 0 the term is computed without gradient, for the log only, and not added: training is then
        exactly DPO. The unweighted Σ_j P of each step goes to `log_history[...][penalty_name]` and `penalty_log`.
        """

        def __init__(self, *args: Any, earlier_layers: Sequence[Layers],
                     make_penalty: Callable[[Layers], Callable[[Layers], torch.Tensor]], alpha: float,
                     lora_scaling: float, penalty_name: str, penalty_log: list[float], **kwargs: Any):
            super().__init__(*args, **kwargs)
            device = self.accelerator.device
            # One θ_i ↦ P(θ_i, θ_j) per earlier vector, over detached copies on the training device.
            self.penalties = [
                make_penalty({name: LoraLayer(layer.A.detach().to(device), layer.B.detach().to(device), layer.scaling)
                              for name, layer in layers.items()})
                for layers in earlier_layers
            ]
            self.alpha, self.lora_scaling = float(alpha), float(lora_scaling)
            self.penalty_name, self.penalty_log = penalty_name, penalty_log

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                       num_items_in_batch=num_items_in_batch)
            if not self.penalties:
                return out
            loss = out[0] if return_outputs else out
            current = adapter_layers(self.accelerator.unwrap_model(model), self.lora_scaling)
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.alpha != 0):
                # Σ_{j<i} P(θ_i, θ_j)
                term = torch.stack([penalty(current) for penalty in self.penalties]).sum()
            mode = "train" if model.training else "eval"
            self._metrics[mode][self.penalty_name].append(term.item())
            if self.alpha != 0:
                loss = loss + self.alpha * term.to(loss.dtype)  # Eq.14
            return (loss, out[1]) if return_outputs else loss

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            super().log(logs, start_time)  # trl folds the step's averaged _metrics (our term included) into `logs`
            if self.penalty_name in logs:  # an eval log carries it as eval_<name>
                self.penalty_log.append(float(logs[self.penalty_name]))

    ValueDecorrelationTrainer.__qualname__ = "ValueDecorrelationTrainer"
    return ValueDecorrelationTrainer


# ---- Training one value, and a sequence ----

def train_value(base_dir: str, pairs: list[dict[str, Any]], value: str, out_dir: Path, config: TrainConfig,
                base_fingerprint: str, *, earlier: Sequence[str | Path] = (), alpha: float = 10.0,
                penalty: Penalty = "hsic", mode: SampleMode = "lora_A", kernel: Kernel = "gaussian",
                estimator: Estimator = "biased",
                sigma: float | None = None, method: str = "mva", progress: bool = True,
                overwrite: bool = False) -> dict[str, Any]:
    """Train θ_value by MVA Eq.14 against the frozen vectors saved at `earlier`, and save it at `out_dir`.

    Returns train_dpo_vector's summary plus `<penalty>_terms` (Σ_{j<i} P before each update; empty when
    `earlier` is empty: the first vector is plain DPO).
    """
    check_decorrelation(alpha, penalty, mode, kernel, sigma, estimator)
    earlier_vectors = [load_value_vector(p) for p in earlier]
    for v in earlier_vectors:
        if v.base_fingerprint != base_fingerprint:
            raise TrainingError(f"earlier value vector {v.value!r} ({v.path}) was trained on base fingerprint "
                                f"{v.base_fingerprint!r}, not on {base_fingerprint!r}; train every vector on one base")
        targets = {name.rsplit(".", 1)[-1] for name in v.layers}
        if not targets & set(config.target_modules):
            raise VectorError(f"earlier value vector {v.value!r} adapts {sorted(targets)}, the new one "
                              f"{config.target_modules}: no shared layer to decorrelate; use the same target_modules")
        ranks = {layer.A.shape[0] for layer in v.layers.values()}
        if penalty == "hsic" and mode == "lora_A" and ranks != {config.lora_r}:
            raise VectorError(f"HSIC mode 'lora_A' pairs rows of A, but earlier vector {v.value!r} has rank "
                              f"{sorted(ranks)} and lora_r={config.lora_r}; use the same lora_r or mode='delta'")
    terms: list[float] = []
    name = penalty  # the log key and the `<name>_terms` meta field
    extra_meta = {
        "alpha": float(alpha), "penalty": penalty, "paper": MVA_PAPER,
        **({"hsic_mode": mode, "hsic_kernel": kernel, "hsic_sigma": sigma} if penalty == "hsic" else {}),
        # written only when not the paper's default, so vectors trained before the option still resume
        **({"hsic_estimator": estimator} if penalty == "hsic" and estimator != "biased" else {}),
        # where each earlier vector sits relative to this one (no path of this machine in the metadata)
        "earlier": [{"value": v.value, "hash": v.hash, "path": os.path.relpath(v.path, Path(out_dir).parent)}
                    for v in earlier_vectors],
        # Filled by the trainer's `log` during training; train_dpo_vector reads extra_meta after training.
        f"{name}_terms": terms,
    }
    summary = train_dpo_vector(
        base_dir, pairs, value, out_dir, config, base_fingerprint, method=method, progress=progress,
        overwrite=overwrite, trainer_class=decorrelation_trainer(),
        trainer_kwargs={"earlier_layers": [v.layers for v in earlier_vectors],
                        "make_penalty": functools.partial(penalty_against, penalty=penalty, mode=mode, kernel=kernel,
                                                          sigma=sigma, estimator=estimator), "alpha": alpha,
                        "lora_scaling": config.lora_alpha / config.lora_r, "penalty_name": name,
                        "penalty_log": terms},
        extra_meta=extra_meta,
    )
    return {**summary, f"{name}_terms": list(terms), "alpha": float(alpha), "penalty": penalty}


def train_sequence(base_dir: str, datasets: Mapping[str, list[dict[str, Any]]], out_root: str | Path,
                   config: TrainConfig, alpha: float, mode: SampleMode, base_fingerprint: str, method: str = "mva",
                   *, kernel: Kernel = "gaussian", sigma: float | None = None, estimator: Estimator = "biased",
                   penalty: Penalty | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """`decorrelated_sequence` with the settings as arguments: `method` is a registered `Decorrelation` variant
    (mva, mva-no-hsic, ortho), whose settings class gives the defaults (the penalty when `penalty` is None)."""
    variant = get_method(method)
    if not isinstance(variant, Decorrelation):
        names = sorted(n for n in available_methods() if isinstance(get_method(n), Decorrelation))
        raise ConfigError(f"method={method!r}: train_sequence trains {names}")
    settings = variant.make_settings(alpha=alpha, mode=mode, kernel=kernel, sigma=sigma, estimator=estimator,
                                     **({} if penalty is None else {"penalty": penalty}))
    return decorrelated_sequence(base_dir, datasets, out_root, config, base_fingerprint, settings, method,
                                 progress=progress)


def decorrelated_sequence(base_dir: str, datasets: Mapping[str, list[dict[str, Any]]], out_root: str | Path,
                          config: TrainConfig, base_fingerprint: str, settings: DecorrelationSettings,
                          method: str = "mva", *, progress: bool = True) -> list[dict[str, Any]]:
    """Train the values in the order of `datasets`, each against the ones before it; write `out_root/<value>/`.

    `settings` choose the penalty and its weight; `method` is the name recorded in each vector's metadata. A value
    whose dir already holds a vector of this same run (method, settings, data, base, earlier vectors) is skipped,
    so an interrupted sequence resumes at vector granularity; a dir from a different run is refused (nothing is
    overwritten). The i-th value (from 0) trains with seed `config.seed + i`.
    """
    if not datasets:
        raise ConfigError("no values to train; give at least one value -> preference pairs")
    s = settings
    out_root = Path(out_root)
    summaries, done = [], []
    for i, (value, pairs) in enumerate(datasets.items()):
        check_pairs(pairs, source=f"value {value!r}")
        out_dir = out_root / value
        # One seed per value: with a shared seed every vector starts from the same lora_A, and the
        # lora_A-mode HSIC of the second vector would start at that of two identical matrices.
        value_config = replace(config, seed=config.seed + i)
        if out_dir.exists():
            vec = _resumable(out_dir, value, pairs, value_config, s.alpha, s.penalty, s.mode, s.kernel, s.sigma,
                             base_fingerprint, method, done, s.estimator)
            terms = f"{s.penalty}_terms"
            summaries.append({"value": value, "method": method, "out_dir": str(out_dir), "skipped": True,
                              "losses": vec.meta.get("losses", []), terms: vec.meta.get(terms, [])})
        else:
            summaries.append(train_value(base_dir, pairs, value, out_dir, value_config, base_fingerprint, earlier=done,
                                         alpha=s.alpha, penalty=s.penalty, mode=s.mode, kernel=s.kernel,
                                         sigma=s.sigma, estimator=s.estimator, method=method, progress=progress))
        done.append(out_dir)
    return summaries


def first_vector_meta(meta: Mapping[str, Any], settings: DecorrelationSettings, method: str) -> dict[str, Any]:
    """The mva_vector.json a run of `method` with `settings` writes for its FIRST vector, given the metadata of a
    first vector another Decorrelation run trained on the same data, config and base (`meta`): the same curves and
    timings, this run's method and settings (what `_resumable` checks)."""
    s = settings
    out = {k: v for k, v in meta.items()
           if k not in ("hsic_mode", "hsic_kernel", "hsic_sigma", "hsic_estimator", "hsic_terms", "ortho_terms")}
    out.update({"method": method, "alpha": float(s.alpha), "penalty": s.penalty, f"{s.penalty}_terms": []})
    if s.penalty == "hsic":
        out.update({"hsic_mode": s.mode, "hsic_kernel": s.kernel, "hsic_sigma": s.sigma})
        if s.estimator != "biased":
            out["hsic_estimator"] = s.estimator
    return out


def share_first_vector(source: str | Path, out_dir: str | Path, pairs: list[dict[str, Any]], config: TrainConfig,
                       base_fingerprint: str, settings: DecorrelationSettings, method: str) -> bool:
    """Place the first vector of a sequential run at `out_dir` without training it: its adapter file a relative
    symlink to `source`'s, its metadata this run's (`first_vector_meta`). True if placed.

    Eq.14's penalty sums over the earlier vectors j < i, so the first vector (i = 1) is plain DPO whatever α,
    the penalty or its settings: with the same pairs, TrainConfig (its seed included) and base, every
    Decorrelation run trains it bit for bit the same (the demo's mva/warmth and mva-no-hsic/warmth have one
    hash). `source` qualifies only if it is such a first vector (no earlier vectors) of that same data, config
    and base; anything else returns False and the caller trains. Readers follow the link: hashing
    (`vectors.file_hash` resolves it), loading, composing, exporting and copying a workspace (`shutil` copies
    the target's bytes).
    """
    source, out_dir = Path(source), Path(out_dir)
    if out_dir.exists() or not (source / "adapter_config.json").is_file() or not (source / META_FILE).is_file():
        return False
    vec = load_value_vector(source)
    meta = vec.meta
    if (meta.get("earlier") or meta.get("penalty") is None or meta.get("data_sha256") != pairs_sha256(pairs)
            or meta.get("train_config") != config.to_dict() or meta.get("base_fingerprint") != base_fingerprint):
        return False
    target = vec.path / ADAPTER_FILE
    if not target.is_file():
        return False
    real = target.resolve()  # link to the file itself, not to another link
    out_dir = out_dir.parent.resolve() / out_dir.name
    tmp = out_dir.with_name(out_dir.name + ".sharing")  # built aside, renamed into place: never half-made
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    shutil.copyfile(source / "adapter_config.json", tmp / "adapter_config.json")
    os.symlink(os.path.relpath(real, out_dir), tmp / ADAPTER_FILE)
    shared = first_vector_meta(meta, settings, method)
    shared["shared_from"] = os.path.relpath(real.parent, out_dir.parent)  # no path of this machine
    (tmp / META_FILE).write_text(json.dumps(shared, indent=2))
    tmp.rename(out_dir)
    return True


def _resumable(out_dir: Path, value: str, pairs: list[dict[str, Any]], config: TrainConfig, alpha: float,
               penalty: str, mode: str, kernel: str, sigma: float | None, base_fingerprint: str, method: str,
               earlier: Sequence[Path], estimator: str = "biased"):
    """The finished vector at `out_dir` if it belongs to this run; else OutputExistsError naming the difference."""
    vec = load_value_vector(out_dir)
    meta = vec.meta
    want = {"value": value, "method": method, "base_fingerprint": base_fingerprint, "data_sha256": pairs_sha256(pairs),
            "train_config": config.to_dict(), "alpha": float(alpha), "penalty": penalty,
            "earlier": [load_value_vector(p).hash for p in earlier]}
    if penalty == "hsic":
        want.update({"hsic_mode": mode, "hsic_kernel": kernel, "hsic_sigma": sigma,
                     "hsic_estimator": None if estimator == "biased" else estimator})
    got = {**meta, "earlier": [e.get("hash") for e in meta.get("earlier", [])]}
    for key, expected in want.items():
        if got.get(key) != expected:
            raise OutputExistsError(
                f"{out_dir} holds a vector of another run ({key}: stored {str(got.get(key))[:80]!r}, this run "
                f"{str(expected)[:80]!r}); remove that dir to retrain it, or choose another output root")
    return vec


# ---- Registry entries: one class, three settings defaults ----

class Decorrelation(TrainingMethod):
    """Sequential value vectors with a decorrelation penalty; see the module docstring."""

    paper = MVA_PAPER
    kind = EXTRAPOLATION
    sequential = True  # trains the values in order, each against the ones before it (Eq.14)
    settings_class = DecorrelationSettings

    @property
    def default_alpha(self) -> float:
        """α when none is given (the settings class's default)."""
        return self.settings_class().alpha

    def train_vectors(self, base_dir: str, datasets: Datasets, out_root: Path, config: TrainConfig,
                      base_fingerprint: str, settings: DecorrelationSettings, *,
                      progress: bool = True) -> list[dict[str, Any]]:
        """The values in order into out_root/<value>/ (`decorrelated_sequence`); finished vectors of this run are kept."""
        return decorrelated_sequence(base_dir, datasets, out_root, config, base_fingerprint, settings, self.name,
                                     progress=progress)

    def train(self, base_dir: str, pairs: list[dict[str, Any]], value: str, out_dir: Path, config: TrainConfig,
              base_fingerprint: str, progress: bool = True, overwrite: bool = False, *,
              earlier: Sequence[str | Path] = (), **settings: Any) -> dict[str, Any]:
        """One value of the sequence, against the frozen vectors at `earlier`; `settings` as `train_all`'s (None:
        the default)."""
        s = self.make_settings({k: v for k, v in settings.items() if v is not None})
        return train_value(base_dir, pairs, value, out_dir, config, base_fingerprint, earlier=earlier, alpha=s.alpha,
                           penalty=s.penalty, mode=s.mode, kernel=s.kernel, sigma=s.sigma, estimator=s.estimator,
                           method=self.name, progress=progress, overwrite=overwrite)


@register_method("mva")
class MVA(Decorrelation):
    """MVA Value Decorrelation Training: sequential DPO + α Σ_{j<i} HSIC(θ_i, θ_j) (Eq.14), extrapolated grid."""

    description = "MVA: sequential DPO vectors decorrelated by α Σ_j HSIC(θ_i, θ_j) (Eq.14); extrapolated grid"


@register_method("mva-no-hsic")
class MVANoHSIC(Decorrelation):
    """Independent per-value DPO vectors (paper 'w/o HSIC'): MVA with α = 0, extrapolated grid."""

    description = "MVA w/o HSIC: independent per-value DPO vectors (α = 0); extrapolated grid"
    settings_class = IndependentSettings


@register_method("mva-delta")
class MVADelta(Decorrelation):
    """MVA with the penalty on ΔW rows and the unbiased HSIC estimator (issue #27 item 1b), extrapolated grid."""

    description = "MVA on ΔW: sequential DPO vectors, α Σ_j unbiased HSIC on the rows of ΔW (Eq.14); extrapolated grid"
    settings_class = DeltaSettings


@register_method("ortho")
class Ortho(Decorrelation):
    """Sequential DPO, an orthogonality penalty α Σ_{j<i} ‖ΔW_iᵀ ΔW_j‖²_F: the paper's contrast to HSIC."""

    description = "Ortho: sequential DPO vectors with α Σ_j ‖ΔW_iᵀ ΔW_j‖²_F instead of HSIC"
    settings_class = OrthoSettings
