"""The preference p written into a prompt (MO-ODPO's prompt conditioning; DESIGN §1 rows `mo-odpo`, `mi-epo`).

Training (methods.conditioned), evaluation (sweep) and export (the model card's system message) write p the
same way through `condition_text`. Imports only config: every layer may use it.
"""

from __future__ import annotations

from typing import Sequence

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
