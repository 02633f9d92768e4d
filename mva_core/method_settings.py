"""The training methods' settings (peft's `LoraConfig` style): one dataclass per method, a typed field with a default
and a `help` each, `Literal[...]` for closed choices, `__post_init__` raising on contradictions; and `SETTINGS`, the
built-in method names -> their settings class.

Torch-free on purpose: `python -m mva_core train --help` makes its flags from these fields (methods.setting_flags)
without loading a trainer, and hsic.py takes its choice types from here. The trainers (methods/*.py) name their
class (`settings_class = DecorrelationSettings`); registering a built-in method with another class than `SETTINGS`
names raises, so the two never disagree.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .conditioning import INNER_RANGE, RicMapping
from .config import ConfigError, Record

# ---- Closed choices ----

Penalty = Literal["hsic", "ortho"]  # P(θ_i, θ_j) of MVA Eq.14
Kernel = Literal["gaussian", "linear"]  # HSIC's kernel (MVA Eq.6: gaussian)
SampleMode = Literal["lora_A", "delta"]  # what HSIC's samples of a vector are, per layer (hsic.py docstring)
Estimator = Literal["biased", "unbiased"]  # MVA Eq.6, or Song et al. 2012's unbiased HSIC
PENALTIES: tuple[str, ...] = get_args(Penalty)
KERNELS: tuple[str, ...] = get_args(Kernel)
SAMPLE_MODES: tuple[str, ...] = get_args(SampleMode)
ESTIMATOR_NAMES: tuple[str, ...] = get_args(Estimator)


@dataclass
class MethodSettings(Record):
    """A training method's settings, one typed field each (`field(default=..., metadata={"help": ...})`,
    `Literal[...]` for closed choices); subclasses add fields and raise in `__post_init__` on contradictions.

    Field metadata the CLI reads: `help` (required), `cli=False` for a setting the caller fills from the workspace
    (the scorers of its manifest) rather than a flag, `aliases` for extra flag spellings kept from older releases.
    """

    def __post_init__(self) -> None:
        self.check_types()


def scorers_field() -> Any:
    """The `scorers` setting of methods that score responses while training (MODPO's margins, the conditioned
    policies' rewards): value -> scorer spec, filled from the workspace manifest, so not a CLI flag."""
    return field(default=None, metadata={
        "help": "value -> scorer spec (its reward model); the CLI takes them from the workspace's workspace.json",
        "cli": False})


# ---- Sequential decorrelated vectors: mva, mva-no-hsic, mva-delta, ortho (one dataclass, a default per variant) ----

def check_decorrelation(alpha: float, penalty: str, mode: str, kernel: str, sigma: float | None,
                        estimator: str = "biased") -> None:
    """Raise ConfigError naming the bad one of Eq.14's settings and its valid values."""
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise ConfigError(f"alpha={alpha!r}: the penalty weight must be a finite number >= 0 (paper: 1, 10, 50)")
    if penalty not in PENALTIES:
        raise ConfigError(f"penalty={penalty!r}: choose 'hsic' or 'ortho'")
    if mode not in SAMPLE_MODES:
        raise ConfigError(f"mode={mode!r}: choose one of {SAMPLE_MODES} (rows of lora_A, or rows of ΔW)")
    if kernel not in KERNELS:
        raise ConfigError(f"kernel={kernel!r}: choose one of {KERNELS}")
    if sigma is not None and not (sigma > 0):
        raise ConfigError(f"sigma={sigma!r}: the kernel bandwidth must be > 0, or None for the median heuristic")
    if estimator not in ESTIMATOR_NAMES:
        raise ConfigError(f"estimator={estimator!r}: choose one of {sorted(ESTIMATOR_NAMES)} (biased: MVA Eq.6; "
                          "unbiased: Song et al. 2012, zero in expectation under independence)")


@dataclass
class DecorrelationSettings(MethodSettings):
    """Eq.14's settings: the penalty P, its weight α, and how HSIC reads the vectors (DESIGN §1 "HSIC")."""

    alpha: float = field(default=10.0, metadata={
        "help": "penalty weight α of MVA Eq.14 (paper: 1, 10, 50); 0 trains independent DPO vectors"})
    penalty: Penalty = field(default="hsic", metadata={
        "help": "P(θ_i, θ_j) of Eq.14: hsic = HSIC (MVA Eq.6); ortho = ‖ΔW_iᵀ ΔW_j‖²_F, the paper's contrast"})
    mode: SampleMode = field(default="lora_A", metadata={
        "help": "HSIC samples per layer: rows of lora_A (the paper's code; an approximation that changes when "
                "LoRA's rank components are relabelled, ΔW unchanged) or rows of ΔW (the paper's text; invariant)"})
    estimator: Estimator = field(default="biased", metadata={
        "help": "HSIC in the penalty: biased = MVA Eq.6 (the paper's); unbiased = Song et al. 2012 (zero in "
                "expectation for independent vectors, so the penalty has no floor at small r)",
        "aliases": ("--hsic-estimator",)})
    kernel: Kernel = field(default="gaussian", metadata={
        "help": "HSIC kernel: gaussian (MVA Eq.6) or linear (for diagnostics)"})
    # None: the median heuristic, per sample set (DESIGN §1), which adapts to the scale of A or ΔW.
    sigma: float | None = field(default=None, metadata={
        "help": "Gaussian kernel bandwidth σ; default: the median heuristic for each vector separately"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_decorrelation(self.alpha, self.penalty, self.mode, self.kernel, self.sigma, self.estimator)


@dataclass
class OrthoSettings(DecorrelationSettings):
    """`ortho`: Eq.14 with the orthogonality penalty in place of HSIC."""

    penalty: Penalty = field(default="ortho", metadata={
        "help": "P(θ_i, θ_j) of Eq.14: ortho = ‖ΔW_iᵀ ΔW_j‖²_F (default here); hsic = HSIC (MVA Eq.6)"})


@dataclass
class IndependentSettings(DecorrelationSettings):
    """`mva-no-hsic` (and `soup`, which trains the same vectors): α is fixed at 0; the penalty is only logged."""

    alpha: float = field(default=0.0, metadata={
        "help": "fixed at 0 (independent vectors, paper 'w/o HSIC'); another value is ignored with a warning"})

    def __post_init__(self) -> None:
        self.check_types()
        if self.alpha != 0:
            warnings.warn(f"alpha={self.alpha} is ignored: mva-no-hsic trains independent vectors (alpha = 0)",
                          stacklevel=4)
            self.alpha = 0.0
        super().__post_init__()


# α of `mva-delta`, measured on the demo's vectors (data/README.md, "mva-delta"): at step 0 the new vector's
# B = 0, so ΔW_i = 0 and the penalty is exactly 0; once B moves, the median-heuristic Gaussian kernel makes
# HSIC(ΔW_i, ΔW_j) independent of ΔW_i's scale, and on the direction DPO alone reaches (mva-no-hsic's brevity vs
# warmth) the unbiased sum over the 60 layers is 0.0431. With L_DPO = log 2 = 0.693 at the start, α = 5 makes the
# penalty 0.215, 24 % of the loss (α = 1: 6 %, 10: 38 %, 20: 55 %).
DELTA_ALPHA = 5.0


@dataclass
class DeltaSettings(DecorrelationSettings):
    """`mva-delta`: Eq.14 with HSIC on the rows of ΔW (the paper's text) and the unbiased estimator."""

    alpha: float = field(default=DELTA_ALPHA, metadata={
        "help": "penalty weight α of MVA Eq.14 (paper: 1, 10, 50); 0 trains independent DPO vectors"})
    mode: SampleMode = field(default="delta", metadata={
        "help": "HSIC samples per layer: rows of ΔW (default here; invariant to LoRA's rank relabelling) or "
                "rows of lora_A (the paper's code)"})
    estimator: Estimator = field(default="unbiased", metadata={
        "help": "HSIC in the penalty: unbiased = Song et al. 2012 (default here); biased = MVA Eq.6",
        "aliases": ("--hsic-estimator",)})


# ---- One vector per simplex preference: dpo-lw, modpo ----

@dataclass
class PreferenceSettings(MethodSettings):
    """Settings of a method with one vector per simplex preference w (dpo-lw, modpo)."""

    preferences: list[list[float]] | None = field(default=None, metadata={
        "help": "simplex preferences w, one vector each (CLI: ';'-separated, e.g. '0.25,0.75;0.75,0.25'); "
                "default for 2 values: 0.25,0.75;0.5,0.5;0.75,0.25"})

    def __post_init__(self) -> None:
        if isinstance(self.preferences, (list, tuple)):  # any sequences of numbers; checked on the simplex later
            self.preferences = [list(p) if isinstance(p, (list, tuple)) else p for p in self.preferences]
        super().__post_init__()


@dataclass
class MODPOSettings(PreferenceSettings):
    """dpo-lw's preferences, plus the reward models r_j of MODPO's margin (methods/modpo.py)."""

    scorers: dict[str, str] | None = scorers_field()


# ---- One preference-conditioned policy: mo-odpo, mi-epo, ric ----

def check_conditioning(beta_w: float, dirichlet_alpha: float) -> None:
    """Raise ConfigError naming the bad one of a conditioned policy's settings."""
    if not (math.isfinite(beta_w) and beta_w >= 0):
        raise ConfigError(f"beta_w={beta_w!r}: must be a finite number >= 0 (MI-EPO: 0.01; 0 = MO-ODPO)")
    if not (math.isfinite(dirichlet_alpha) and dirichlet_alpha > 0):
        raise ConfigError(f"dirichlet_alpha={dirichlet_alpha!r}: must be > 0 (1 = uniform on the simplex)")


@dataclass
class ConditionedSettings(MethodSettings):
    """Settings of a preference-conditioned policy trained online (methods/conditioned.py); `mo-odpo` and `mi-epo`
    are one method with different `beta_w` defaults."""

    scorers: dict[str, str] | None = scorers_field()
    beta_w: float = field(default=0.0, metadata={
        "help": "weight β_w of MI-EPO's weight-consistency term (0 = MO-ODPO; MI-EPO: 0.01)"})
    dirichlet_alpha: float = field(default=1.0, metadata={
        "help": "concentration of the Dirichlet the training preferences w are drawn from (1 = uniform on the "
                "simplex)"})
    max_new_tokens: int = field(default=48, metadata={
        "help": "tokens per online sample the policy generates during training"})
    temperature: float = field(default=0.7, metadata={
        "help": "sampling temperature of the online samples during training"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_conditioning(self.beta_w, self.dirichlet_alpha)


@dataclass
class MIEPOSettings(ConditionedSettings):
    """`mi-epo`: the conditioned policy with the weight-consistency term on."""

    beta_w: float = field(default=0.01, metadata={  # DESIGN §1
        "help": "weight β_w of MI-EPO's weight-consistency term (MI-EPO: 0.01; 0 = MO-ODPO)"})


@dataclass
class RiCSettings(MethodSettings):
    """RiC's settings: the reward models whose scores go in the prompt, and the preference-to-reward mapping."""

    scorers: dict[str, str] | None = scorers_field()
    mapping: RicMapping = field(default="linf", metadata={
        "help": "RiC's preference-to-reward mapping used at evaluation, stored with the policy (linf: min(N·p_i, 1) "
                "of each value's training score range, RiC's default; l2: p_i/|p|; quantile: that share as a "
                "quantile of the training scores, robust to skewed scorers)"})
    inner: list[float] = field(default_factory=lambda: list(INNER_RANGE), metadata={
        "help": "inner quantile range of the training scores the desired scores are mapped into (as RiC's released "
                "code bounds them, never the single most extreme response): 'a,b' with 0 <= a < b <= 1; 0,1 = the "
                "full [min, max]. Stored with the policy; evaluation only"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.inner) != 2 or not (0.0 <= self.inner[0] < self.inner[1] <= 1.0):
            raise ConfigError(f"inner={self.inner}: give two quantile levels 0 <= a < b <= 1, e.g. "
                              f"{','.join(map(str, INNER_RANGE))}")


# ---- The built-in methods' settings, by method name (the registry checks its classes against this) ----

SETTINGS: dict[str, type[MethodSettings]] = {
    "dpo": MethodSettings,  # β and the LoRA shape are the TrainConfig's
    "dpo-lw": PreferenceSettings,
    "dpo-seqt": MethodSettings,
    "mi-epo": MIEPOSettings,
    "mo-odpo": ConditionedSettings,
    "mod": IndependentSettings,  # the settings of mva-no-hsic, whose training it is
    "modpo": MODPOSettings,
    "mva": DecorrelationSettings,
    "mva-delta": DeltaSettings,
    "mva-no-hsic": IndependentSettings,
    "ortho": OrthoSettings,
    "ric": RiCSettings,
    "soup": IndependentSettings,
}
