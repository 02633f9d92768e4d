"""The preference p written into a prompt (DESIGN §1 rows `mo-odpo`, `mi-epo`, `ric`).

A conditioned policy reads p as a system message; how p becomes that text is a `PromptConditioning` object
the policy stores in its mva_vector.json (`conditioning`):
- `PreferenceWeights` (MO-ODPO, MI-EPO): the weights themselves, "Preference weights: warmth=0.30, ...";
- `RewardsInContext` (RiC): the desired per-value scores RiC's preference-to-reward mapping gives for p,
  "<warmth> 0.9 <brevity> 1.0".
Training (methods/), evaluation (sweep, via `kinds.CONDITIONED.conditioning`) and export (the model card's
system message) write p through the same object. Imports only config: every layer may use it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping, Sequence, get_args

import numpy as np

from .config import ConfigError


def quantise(preference: Sequence[float], units: int = 100) -> list[float]:
    """w on the 1/units grid, still summing to 1 (largest remainders get the leftover units): the numbers the
    policy reads in its prompt are exactly the ones its reward is scalarised with."""
    p = np.asarray(preference, dtype=float)
    if p.ndim != 1 or len(p) == 0 or not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
        raise ConfigError(f"preference {list(preference)}: give non-negative finite weights, one per value, e.g. "
                          f"{[round(1 / max(len(p), 1), 2)] * max(len(p), 1)}")
    p = p / p.sum() * units
    base = np.floor(p + 1e-9)
    left = int(round(units - base.sum()))
    for i in np.argsort(-(p - base), kind="stable")[:left]:
        base[i] += 1
    return [float(x) / units for x in base]


def condition_text(preference: Sequence[float], value_names: Sequence[str], system_prompt: str | None = None) -> str:
    """The system message that carries w (MO-ODPO's prompt conditioning), after any workspace system prompt."""
    if len(preference) != len(value_names):
        raise ConfigError(f"preference {list(preference)} has {len(preference)} weights for values {list(value_names)}; "
                          "give one weight per value")
    w = quantise(preference)
    text = "Preference weights: " + ", ".join(f"{v}={x:.2f}" for v, x in zip(value_names, w)) + "."
    return f"{system_prompt}\n{text}" if system_prompt else text


# ---- Conditioning objects: how a policy reads p ----

class PromptConditioning(ABC):
    """How a conditioned policy reads the preference p: the system message written for p (one per policy)."""

    name: ClassVar[str]

    @abstractmethod
    def text(self, preference: Sequence[float], value_names: Sequence[str], system_prompt: str | None = None) -> str:
        """The system message carrying p (p's weights in `value_names` order), after any workspace system prompt."""

    def to_dict(self) -> dict[str, Any]:
        """What mva_vector.json stores (`conditioning_from_meta` reads it back)."""
        return {"name": self.name}


@dataclass(frozen=True)
class PreferenceWeights(PromptConditioning):
    """MO-ODPO's prompt conditioning: the weights of p themselves (`condition_text`)."""

    name: ClassVar[str] = "preference-weights"

    def text(self, preference: Sequence[float], value_names: Sequence[str], system_prompt: str | None = None) -> str:
        return condition_text(preference, value_names, system_prompt)


RicMapping = Literal["linf", "l2", "quantile"]
RIC_MAPPINGS: tuple[str, ...] = get_args(RicMapping)
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 101)  # the levels of the score quantiles a RiC policy stores
FULL_RANGE = (0.0, 1.0)  # targets over [min, max] of the training scores (policies stored before `inner`)
# The inner quantile range RiC's targets are bounded by (`RewardsInContext.inner`, issue #27 item 3). RiC's released
# code never asks for the single most extreme training response: `ric/utils.py::balancing_rewards` clips the
# normalised scores to [-10, 10] and rescales them so their 0.01 % / 99.99 % quantiles sit at -4 / +4 (then clips to
# [-4, 4]), and `ric/evaluation.py` maps p into [min, max] of 50 000 standard-normal draws (about ±4.2 sd), which on
# its ~160k training responses lies inside their range, with many responses beyond either end. On a few hundred
# responses the same idea is an inner range with several responses beyond each end: 5 % .. 95 % (on the demo's 283,
# ~14 each side; its skewed brevity asks for z = 1.4 at most instead of the one outlier's 9.1).
INNER_RANGE = (0.05, 0.95)


def ric_desired_rewards(preference: Sequence[float], low: Sequence[float], high: Sequence[float],
                        mapping: RicMapping = "linf",
                        quantiles: Sequence[Sequence[float]] | None = None,
                        inner: Sequence[float] = FULL_RANGE) -> np.ndarray:
    """RiC's preference-to-reward mapping (Yang et al. 2024, https://arxiv.org/abs/2402.10207, inference stage;
    read from the released code, github.com/YangRui2015/RiC): the desired normalised score of each value i for p
    (p normalised to sum 1, N values, [low_i, high_i] the range of value i's normalised training scores, Q_i their
    quantile function), rounded to 1 decimal as RiC writes them:

        linf:      f_i(p) = min(N·p_i, 1) · (high_i − low_i) + low_i
        l2:        f_i(p) = p_i / ‖p‖₂ · (high_i − low_i) + low_i
        quantile:  f_i(p) = Q_i(min(N·p_i, 1))
    linf is the default of `ric/utils.py::map_rewards_from_preference` (the most preferred value asks for high_i);
    l2 is that function with method='l2', what RiC's LLM evaluation script passes; quantile is its text-to-image
    inference script (2 values: the top value at its maximum, the other at Q(2·p_i)).
    `quantiles` (mapping "quantile"): per value, Q_i at `QUANTILE_LEVELS` (interpolated linearly between them).
    `inner` = (a, b) bounds the targets to the inner quantile range of the training scores (`INNER_RANGE`, as RiC's
    released code bounds them): linf and l2 use [low_i, high_i] = [Q_i(a), Q_i(b)], quantile reads
    Q_i(a + min(N·p_i, 1)·(b − a)); (0, 1), the full range, is the formula above with the given low/high.
    """
    p = np.asarray(preference, dtype=float)
    lo, hi = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    if p.ndim != 1 or len(p) == 0 or not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
        raise ConfigError(f"preference {list(preference)}: give non-negative finite weights, one per value, not all 0")
    if lo.shape != p.shape or hi.shape != p.shape:
        raise ConfigError(f"preference {list(preference)} has {len(p)} weights but the reward ranges have "
                          f"{lo.size} and {hi.size} values; give one weight per value")
    p = p / p.sum()
    a, b = (float(x) for x in inner)
    if not (0.0 <= a < b <= 1.0):
        raise ConfigError(f"inner quantile range {list(inner)}: give two levels 0 <= a < b <= 1, e.g. "
                          f"{list(INNER_RANGE)}")
    bounded = (a, b) != FULL_RANGE
    Q = np.asarray(quantiles if quantiles is not None else [], dtype=float)
    if (mapping == "quantile" or bounded) and Q.shape != (len(p), len(QUANTILE_LEVELS)):
        raise ConfigError(f"the quantile mapping needs each value's score quantiles at {len(QUANTILE_LEVELS)} "
                          f"levels (shape {(len(p), len(QUANTILE_LEVELS))}; so does an inner range, here "
                          f"{[a, b]}), got shape {Q.shape}; retrain the policy with this version, or use mapping "
                          "'linf' over the full range (inner 0,1)")
    if bounded:
        lo = np.array([np.interp(a, QUANTILE_LEVELS, q) for q in Q])
        hi = np.array([np.interp(b, QUANTILE_LEVELS, q) for q in Q])
    if mapping == "linf":
        desired = np.minimum(len(p) * p, 1.0) * (hi - lo) + lo
    elif mapping == "l2":
        desired = p / np.sqrt((p ** 2).sum()) * (hi - lo) + lo
    elif mapping == "quantile":
        levels = a + np.minimum(len(p) * p, 1.0) * (b - a)
        desired = np.array([np.interp(level, QUANTILE_LEVELS, q) for level, q in zip(levels, Q)])
    else:
        raise ConfigError(f"RiC mapping {mapping!r} is unknown; choose one of {list(RIC_MAPPINGS)}")
    return np.round(desired, 1) + 0.0  # + 0.0: no "-0.0" in the prompt


def reward_text(scores: Sequence[float], value_names: Sequence[str]) -> str:
    """RiC's rewards in the prompt, one `<value> score` per value, scores to 1 decimal as RiC writes them
    (its `<rm1_score> 0.4 <rm2_score> -1.2`, with our value names as the tags): "<warmth> 0.4 <brevity> -1.2"."""
    if len(scores) != len(value_names):
        raise ConfigError(f"{len(scores)} scores for values {list(value_names)}; give one score per value")
    if not all(math.isfinite(s) for s in scores):
        raise ConfigError(f"scores {list(scores)}: every score written into a prompt must be finite")
    return " ".join(f"<{v}> {round(float(s), 1) + 0.0:.1f}" for v, s in zip(value_names, scores))


@dataclass(frozen=True)
class RewardsInContext(PromptConditioning):
    """RiC's conditioning: p -> desired normalised scores (`ric_desired_rewards`) -> `reward_text`, in the order of
    the values the policy was trained on (`values`); [low, high] and `quantiles` describe its training scores."""

    values: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    mapping: RicMapping = "linf"
    quantiles: tuple[tuple[float, ...], ...] = ()  # per value, at QUANTILE_LEVELS (needed by mapping "quantile")
    inner: tuple[float, float] = FULL_RANGE  # quantile levels bounding the targets (INNER_RANGE; stored policies: full)
    name: ClassVar[str] = "rewards-in-context"

    @classmethod
    def from_scores(cls, values: Sequence[str], scores: np.ndarray, mapping: RicMapping = "linf",
                    inner: Sequence[float] = FULL_RANGE) -> "RewardsInContext":
        """From the normalised training scores (N, n_values) a policy was trained on."""
        Q = np.quantile(scores, QUANTILE_LEVELS, axis=0).T  # (n_values, levels)
        return cls(tuple(values), tuple(scores.min(axis=0)), tuple(scores.max(axis=0)), mapping,
                   tuple(tuple(float(x) for x in q) for q in Q), tuple(float(x) for x in inner))

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        object.__setattr__(self, "low", tuple(float(x) for x in self.low))
        object.__setattr__(self, "high", tuple(float(x) for x in self.high))
        object.__setattr__(self, "quantiles", tuple(tuple(float(x) for x in q) for q in self.quantiles))
        object.__setattr__(self, "inner", tuple(float(x) for x in self.inner))
        if len(self.inner) != 2 or not (0.0 <= self.inner[0] < self.inner[1] <= 1.0):
            raise ConfigError(f"RiC inner quantile range {list(self.inner)}: give two levels 0 <= a < b <= 1, "
                              f"e.g. {list(INNER_RANGE)}")
        if not self.values or len(set(self.values)) != len(self.values) or not (
                len(self.low) == len(self.high) == len(self.values)):
            raise ConfigError(f"RiC conditioning needs one (low, high) per distinct value; got values {self.values}, "
                              f"low {self.low}, high {self.high}")
        bad = [v for v, lo, hi in zip(self.values, self.low, self.high)
               if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi)]
        if bad:
            raise ConfigError(f"RiC reward range of value(s) {bad} is not finite with low <= high; retrain the policy")
        if self.mapping not in RIC_MAPPINGS:
            raise ConfigError(f"RiC mapping {self.mapping!r} is unknown; choose one of {list(RIC_MAPPINGS)}")

    def rewards(self, preference: Sequence[float], value_names: Sequence[str]) -> np.ndarray:
        """The desired scores for p (given in `value_names` order), in the policy's `values` order."""
        if len(preference) != len(value_names) or set(value_names) != set(self.values):
            raise ConfigError(f"preference {list(preference)} over values {list(value_names)}: this RiC policy was "
                              f"trained on values {list(self.values)}; give one weight for each of them")
        by_name = dict(zip(value_names, preference))
        return ric_desired_rewards([by_name[v] for v in self.values], self.low, self.high, self.mapping,
                                   self.quantiles or None, self.inner)

    def text(self, preference: Sequence[float], value_names: Sequence[str], system_prompt: str | None = None) -> str:
        text = reward_text(self.rewards(preference, value_names), self.values)
        return f"{system_prompt}\n{text}" if system_prompt else text

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "values": list(self.values), "low": list(self.low), "high": list(self.high),
                "mapping": self.mapping, "quantiles": [list(q) for q in self.quantiles],
                **({"inner": list(self.inner)} if self.inner != FULL_RANGE else {})}


CONDITIONINGS: dict[str, type[PromptConditioning]] = {c.name: c for c in (PreferenceWeights, RewardsInContext)}


def conditioning_from_meta(meta: Mapping[str, Any]) -> PromptConditioning:
    """The conditioning a policy's mva_vector.json names (`conditioning`); MO-ODPO's weights text for policies
    stored before the field existed (mo-odpo, mi-epo)."""
    stored = meta.get("conditioning")
    if stored is None:
        return PreferenceWeights()
    if not isinstance(stored, Mapping) or stored.get("name") not in CONDITIONINGS:
        raise ConfigError(f"the policy's mva_vector.json has conditioning {stored!r}; its `name` must be one of "
                          f"{list(CONDITIONINGS)} (retrain the policy with this version)")
    return CONDITIONINGS[stored["name"]](**{k: v for k, v in stored.items() if k != "name"})
