"""How a method's candidates are composed from its value vectors (DESIGN §1, §2): one object per kind.

A kind owns its weight sets (the grid it sweeps), how it recognises its stored candidates, its place in the
order rows are listed in, and how a candidate is evaluated: weights into the model (every kind but one) or
the preference p into the prompt (`CONDITIONED`). Code asks the kind object (`get_kind(name)`); the names are
what workspace rows, the registry and the CLI's `--kind` carry.

Imports only config, conditioning, pareto and vectors: every layer above may ask a kind.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Iterator, Sequence

import numpy as np

from .conditioning import PromptConditioning, conditioning_from_meta
from .config import META_FILE, ConfigError, SearchSpace

if TYPE_CHECKING:  # annotations only: vectors loads torch, which asking a kind (e.g. the CLI's --help) never needs
    from .vectors import ValueVector



WeightSet = tuple[tuple[Path, ...], np.ndarray]  # (vector dirs, weights (K, n_vectors)) evaluated together


class CompositionKind(ABC):
    """One way of composing candidates from a vector set (mergekit-style: the code asks the object)."""

    name: ClassVar[str]
    description: ClassVar[str]
    order: ClassVar[int]  # rows are listed grids first: the ones a user explores first
    has_grid: ClassVar[bool] = False  # weights swept on a grid over one vector per value
    conditioned: ClassVar[bool] = False  # the candidate's preference goes into the prompt, not into the model
    single_models: ClassVar[bool] = False  # every candidate is one vector alone at weight 1
    per_value_vectors: ClassVar[bool] = True  # reads vectors/<method>/<value>/; else every adapter dir there
    row_per_value: ClassVar[bool] = False  # one comparison row per value (vertices: "dpo-<value>")
    model_per_vector: ClassVar[bool] = False  # several models, one per vector, each evaluated on its own
    extrapolates: ClassVar[bool] = False  # weights range over [0, C], C may exceed 1 (the point of MVA)
    on_simplex: ClassVar[bool] = False  # the grid keeps the rows summing to 1

    @abstractmethod
    def weight_sets(self, row: "ComparedMethod", C: float, step: float,
                    active: Sequence[int] | None = None) -> Iterator[WeightSet]:
        """(vector dirs, weights (K, n)) groups that make up the row's candidates; `step` and `C` for grids,
        `active` (grids only) sweeps just these values' weights, the others fixed at 0."""

    @abstractmethod
    def contains(self, row: "ComparedMethod", vector_hashes: tuple[str, ...], weights: tuple[float, ...]) -> bool:
        """Is a stored candidate (its vectors and weights) a point of `row`?"""

    def label(self, n_vectors: int) -> str:
        """How a picker names this kind's weight sets."""
        return self.description

    def bound(self, C: float) -> float:
        """The largest weight of its candidates, given the workspace's bound C."""
        return 1.0

    def __repr__(self) -> str:
        return f"<composition kind {self.name}>"


class _Grid(CompositionKind):
    has_grid = True

    def weight_sets(self, row: "ComparedMethod", C: float, step: float,
                    active: Sequence[int] | None = None) -> Iterator[WeightSet]:
        n = len(row.vector_dirs)
        active = list(range(n)) if active is None else list(active)
        if not active or any(not 0 <= i < n for i in active) or len(set(active)) != len(active):
            raise ConfigError(f"values to sweep {active}: choose one or more distinct values of the {n}")
        sub = SearchSpace(n_values=len(active), C=self.bound(C), step=step, kind=self.name).grid()  # (K, len(active))
        W = np.zeros((len(sub), n))
        W[:, active] = sub
        yield row.vector_dirs, W


class Extrapolation(_Grid):
    name = "extrapolation"
    description = "w in [0, C]^n over one vector per value (MVA Eq.15)"
    order = 0
    extrapolates = True

    def bound(self, C: float) -> float:
        return C

    def contains(self, row: "ComparedMethod", vector_hashes: tuple[str, ...], weights: tuple[float, ...]) -> bool:
        return tuple(vector_hashes) == row.vector_hashes

    def label(self, n_vectors: int) -> str:
        return "extrapolation [0, C]^n"


class Simplex(_Grid):
    name = "simplex"
    description = "w on the simplex, sum w = 1, over one vector per value (Rewarded Soups)"
    order = 1
    on_simplex = True

    def contains(self, row: "ComparedMethod", vector_hashes: tuple[str, ...], weights: tuple[float, ...]) -> bool:
        return tuple(vector_hashes) == row.vector_hashes and abs(sum(weights) - 1.0) <= 1e-6

    def label(self, n_vectors: int) -> str:
        return "simplex (Σ w = 1, SOUP)"


class _Fixed(CompositionKind):
    """A kind without a grid: its candidates are fixed points (`points`)."""

    def weight_sets(self, row: "ComparedMethod", C: float, step: float,
                    active: Sequence[int] | None = None) -> Iterator[WeightSet]:
        if active is not None:
            raise ConfigError(f"method {row.name!r} has no weight grid ({self.name}): its candidates use every value; "
                              "sweep all values")
        return self.points(row)

    @abstractmethod
    def points(self, row: "ComparedMethod") -> Iterator[WeightSet]:
        """The row's candidates, as (vector dirs, weights) groups."""


class _OneAtATime(_Fixed):
    """Candidates that are one vector of the set at weight 1."""

    per_value_vectors = False

    def contains(self, row: "ComparedMethod", vector_hashes: tuple[str, ...], weights: tuple[float, ...]) -> bool:
        return len(vector_hashes) == 1 and vector_hashes[0] in row.vector_hashes and tuple(weights) == (1.0,)


class Conditioned(_OneAtATime):
    """One policy at weight 1, evaluated with each evaluation preference p (MI-EPO) written into its prompt."""

    name = "conditioned"
    description = "one policy at weight 1 with the evaluation preference p in its prompt (MO-ODPO, MI-EPO)"
    order = 2
    conditioned = True

    def points(self, row: "ComparedMethod") -> Iterator[WeightSet]:
        n_values = len(policy_values(row.vector_dirs[0]))
        from .pareto import preference_vectors  # pymoo underneath: loaded when a grid is enumerated

        yield row.vector_dirs, preference_vectors(n_values) if n_values else np.zeros((0, 0))

    def label(self, n_vectors: int) -> str:
        return "its policy with each evaluation preference p in the prompt"

    @staticmethod
    def is_policy(vectors: Sequence[ValueVector]) -> bool:
        """Is this vector set one preference-conditioned policy (methods.conditioned writes the flag)?"""
        return len(vectors) == 1 and bool(vectors[0].meta.get(CONDITIONED.name))

    @staticmethod
    def conditioning(vectors: Sequence[ValueVector]) -> PromptConditioning:
        """How the policy reads p (the `conditioning` its mva_vector.json names: MO-ODPO's weights, RiC's
        desired rewards); what evaluation and export write into its prompt."""
        return conditioning_from_meta(vectors[0].meta)

    @staticmethod
    def is_candidate(preference: object) -> bool:
        """Does a stored candidate carry the preference p of its prompt (it is a conditioned policy's run)?"""
        return isinstance(preference, list)


class Each(_OneAtATime):
    name = "each"
    description = "every trained vector alone at weight 1 (one model per preference, or one model)"
    order = 3
    single_models = True
    model_per_vector = True

    def points(self, row: "ComparedMethod") -> Iterator[WeightSet]:
        for d in row.vector_dirs:
            yield (d,), np.ones((1, 1))

    def label(self, n_vectors: int) -> str:
        return f"each of its {n_vectors} models alone (w = 1)"


class Vertices(_Fixed):
    """Each value's vector alone at weight 1: one row per value ("dpo-<value>"), `row.vertex` says which."""

    name = "vertices"
    description = "each value's vector alone at weight 1 (paper rows DPO-<value>)"
    order = 4
    single_models = True
    row_per_value = True

    def label(self, n_vectors: int) -> str:
        return "its value's vector alone (w = 1)"

    def points(self, row: "ComparedMethod") -> Iterator[WeightSet]:
        yield row.vector_dirs, np.eye(len(row.vector_dirs))[[row.vertex]]

    def contains(self, row: "ComparedMethod", vector_hashes: tuple[str, ...], weights: tuple[float, ...]) -> bool:
        return (tuple(vector_hashes) == row.vector_hashes
                and all(w == (1.0 if i == row.vertex else 0.0) for i, w in enumerate(weights)))


EXTRAPOLATION, SIMPLEX, CONDITIONED, EACH, VERTICES = Extrapolation(), Simplex(), Conditioned(), Each(), Vertices()
KINDS: dict[str, CompositionKind] = {k.name: k for k in (EXTRAPOLATION, SIMPLEX, CONDITIONED, EACH, VERTICES)}
GRID_KINDS: list[str] = [k.name for k in KINDS.values() if k.has_grid]


def get_kind(name: str) -> CompositionKind:
    """The kind registered as `name`; an unknown name raises listing the valid ones."""
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"composition kind {name!r} is unknown; choose one of {list(KINDS)}") from None


def policy_values(policy_dir: Path) -> list[str]:
    """The values a conditioned policy was trained for (its mva_vector.json), in its preference order."""
    meta = policy_dir / META_FILE
    return list(json.loads(meta.read_text()).get("values", [])) if meta.is_file() else []


@dataclass(frozen=True)
class ComparedMethod:
    """One row of a comparison: a method's value vectors and the region of weights its candidates live in."""

    name: str  # as shown: "mva", "soup", "dpo-warmth", "dpo-lw"
    method: str  # registry name ("dpo" for the rows "dpo-<value>")
    composition: str  # the name of its kind (mva_core.kinds.KINDS)
    vector_dirs: tuple[Path, ...]
    vector_hashes: tuple[str, ...]
    vertex: int | None = None  # `vertices` rows: the value whose vector is used alone

    @property
    def kind(self) -> CompositionKind:
        """What kind of composition this row is (mva_core.kinds): its weight sets, its candidates, its order."""
        return get_kind(self.composition)

    def weight_sets(self, C: float, step: float, active: Sequence[int] | None = None) -> Iterator[WeightSet]:
        """(vector dirs, weights (K, n)) groups that make up this method's candidates; `step` for the grids.
        `active` (grids only): sweep just these values' weights, the others fixed at 0."""
        return self.kind.weight_sets(self, C, step, active)

    def contains(self, vector_hashes: tuple[str, ...], weights: tuple[float, ...]) -> bool:
        """Is a stored candidate (its vectors and weights) a point of this method?"""
        return self.kind.contains(self, vector_hashes, weights)
