"""How a method's candidates are composed from its value vectors (DESIGN §1, §2): one object per kind.

A kind owns its weight sets (the grid it enumerates: `SearchSpace`), how it recognises its stored candidates,
its place in the order rows are listed in, and how a row of weights becomes a candidate to evaluate: weights into
the model (every kind but one) or the preference p into the prompt (`CONDITIONED`). Code asks the kind object
(`get_kind(name)`) what it needs; the names are what workspace rows, stored runs, the registry and the CLI's
`--kind` carry, resolved to the object once where they are read.

Imports only config and conditioning at load time (pareto inside the function that needs it, vectors for
annotations only): every layer above may ask a kind, the CLI's --help included, without loading torch or pymoo.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Sequence

import numpy as np

from .conditioning import PromptConditioning, conditioning_from_meta
from .config import MAX_GRID_POINTS, META_FILE, ConfigError, GridTooLargeError, Record, WeightsError

if TYPE_CHECKING:  # annotations only: vectors loads torch, which asking a kind (e.g. the CLI's --help) never needs
    from .vectors import ValueVector


WeightSet = tuple[tuple[Path, ...], np.ndarray]  # (vector dirs, weights (K, n_vectors)) evaluated together


class CompositionKind(ABC):
    """One way of composing candidates from a vector set (mergekit-style: the code asks the object)."""

    name: ClassVar[str]
    description: ClassVar[str]
    order: ClassVar[int]  # rows are listed grids first: the ones a user explores first
    # What callers ask (each a question about behaviour; a new kind answers them in its class):
    has_grid: ClassVar[bool] = False  # its weights are swept on a grid (a step, and a subset of values, apply)
    extrapolates: ClassVar[bool] = False  # its weights range over [0, C], C may exceed 1 (the point of MVA)
    searchable: ClassVar[bool] = False  # its candidates fill the box [0, C]^n an adaptive search explores
    preference_in_prompt: ClassVar[bool] = False  # a candidate is p written into the prompt, not weights in the model
    several_models: ClassVar[bool] = False  # a row's candidates are several models, one per vector, each on its own
    one_vector_per_value: ClassVar[bool] = True  # reads vectors/<method>/<value>/; else every adapter dir there
    constraint: ClassVar[str] = ""  # what its grid keeps of the box, as a picker says it ("" for the whole box)
    mixes_at_decoding: ClassVar[bool] = False  # a candidate is a per-token mixture of n + 1 models (MOD), not one model
    decoding_tag: ClassVar[str] = ""  # appended to its candidates' stored decoding (how the next token is chosen)

    @property
    def continuous(self) -> bool:
        """Is every point of the sliders one of its candidates (a grid's weights, or a conditioned policy's p), rather
        than a few fixed models?"""
        return self.has_grid or self.preference_in_prompt

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

    def decoded_as(self, decoding_fingerprint: str) -> str:
        """The decoding its candidates are stored with (part of their content key): the decoding config's
        fingerprint, tagged when the kind picks each token its own way (so a decode-time candidate and the
        parameter-space candidate at the same weights are two candidates)."""
        return f"{decoding_fingerprint}|{self.decoding_tag}" if self.decoding_tag else decoding_fingerprint

    def decodes(self, stored_decoding: str) -> bool:
        """Was a stored candidate (its stored decoding) decoded the way this kind decodes?"""
        return str(stored_decoding).partition("|")[2] == self.decoding_tag

    def rows_per_token(self, n_vectors: int) -> int:
        """Model rows one sequence runs per generated token (the cost of a candidate): 1, the candidate's model."""
        return 1

    def bound(self, C: float) -> float:
        """The largest weight of its candidates, given the workspace's bound C."""
        return 1.0

    def sweep_kinds(self) -> list[str]:
        """The kinds a sweep of one of its rows may choose between (`--kind`, the Sweep page's picker)."""
        return [self.name]

    def rows(self, name: str, vector_dirs: tuple[Path, ...], vector_hashes: tuple[str, ...],
             value_names: Sequence[str]) -> list["ComparedMethod"]:
        """The comparison rows one method's vectors give (Workspace.compared_methods): one by default."""
        return [ComparedMethod(name, name, self.name, vector_dirs, vector_hashes)]

    def value_weights(self, row: "ComparedMethod", vector_hashes: Sequence[Sequence[str]],
                      preferences: Sequence[object], n_values: int) -> list[list[float]] | None:
        """The weights over the `n_values` values that each stored candidate of `row` (its vectors' hashes, its
        stored preference) stands for, where these are not its composition weights; None where they are."""
        return None

    # ---- How a row of weights becomes a candidate to evaluate (sweep.Evaluator asks `evaluated_as(...)`) ----

    def row_names(self, value_names: Sequence[str], vectors: Sequence[ValueVector]) -> tuple[str, ...]:
        """What the entries of a row of weights are named after: the workspace's values (one vector per value)."""
        return tuple(value_names)

    def row_space(self, n: int, C: float) -> "SearchSpace":
        """The space the evaluated rows (n entries) must lie in: the workspace's box [0, C]^n."""
        return SearchSpace(n_values=n, C=C)

    def preference(self, row: Sequence[float]) -> tuple[float, ...] | None:
        """The preference p the candidate of `row` writes into its prompt (None: nothing, weights go to the model)."""
        return None

    def candidate_weights(self, row: Sequence[float]) -> tuple[float, ...]:
        """The weights its vectors are composed with for the candidate of `row`: the row itself."""
        return tuple(float(w) for w in row)

    def candidate_values(self, row_names: tuple[str, ...], vectors: Sequence[ValueVector]) -> tuple[str, ...]:
        """What the candidate's weights are named after (stored with it): the row's names."""
        return row_names

    def prompt_conditioning(self, vectors: Sequence[ValueVector]) -> PromptConditioning | None:
        """How its candidates' preference is written into the prompt; None: it is not."""
        return None

    def __repr__(self) -> str:
        return f"<composition kind {self.name}>"

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return get_kind, (self.name,)  # unpickled (e.g. by a Ray worker) as the one registered object


class GridKind(CompositionKind):
    """Weights swept on a grid over one vector per value: it enumerates its grid of a `SearchSpace`."""

    has_grid = True

    def weight_sets(self, row: "ComparedMethod", C: float, step: float,
                    active: Sequence[int] | None = None) -> Iterator[WeightSet]:
        n = len(row.vector_dirs)
        active = list(range(n)) if active is None else list(active)
        if not active or any(not 0 <= i < n for i in active) or len(set(active)) != len(active):
            raise ConfigError(f"values to sweep {active}: choose one or more distinct values of the {n}")
        sub = SearchSpace(n_values=len(active), C=self.bound(C), step=step, kind=self).grid()  # (K, len(active))
        W = np.zeros((len(sub), n))
        W[:, active] = sub
        yield row.vector_dirs, W

    def sweep_kinds(self) -> list[str]:
        return list(GRID_KINDS)

    def grid_size(self, space: "SearchSpace") -> int:
        """How many points `grid(space)` has, counted without building it (a fine step can mean billions)."""
        return len(space.ticks()) ** space.n_values

    def grid(self, space: "SearchSpace", max_points: int = MAX_GRID_POINTS) -> np.ndarray:
        """Its points of `space`, shape (K, n): of the box lattice (ticks 0, step, … ≤ C per weight), the ones it
        keeps. A lattice of more than `max_points` points is refused before it is built."""
        size = len(space.ticks()) ** space.n_values  # the whole lattice is built before `keep` filters it
        if size > max_points:
            raise GridTooLargeError(f"step {space.step:g} over {space.n_values} value(s) means enumerating {size:,} "
                                    f"grid points (at most {max_points:,}); use a coarser step, e.g. 0.1")
        ticks = space.ticks()
        mesh = np.stack(np.meshgrid(*([ticks] * space.n_values), indexing="ij"), axis=-1).reshape(-1, space.n_values)
        return self.keep(mesh)

    def keep(self, mesh: np.ndarray) -> np.ndarray:
        """The rows of the box lattice (K, n) that are its points: all of them."""
        return mesh

    def check(self, w: np.ndarray) -> None:
        """Raise WeightsError if the weights `w`, inside the box, are not a point of it (the box: always are)."""


class Extrapolation(GridKind):
    name = "extrapolation"
    description = "w in [0, C]^n over one vector per value (MVA Eq.15)"
    order = 0
    extrapolates = True
    searchable = True

    def bound(self, C: float) -> float:
        return C

    def contains(self, row: "ComparedMethod", vector_hashes: tuple[str, ...], weights: tuple[float, ...]) -> bool:
        return tuple(vector_hashes) == row.vector_hashes

    def label(self, n_vectors: int) -> str:
        return "extrapolation [0, C]^n"


class Simplex(GridKind):
    name = "simplex"
    description = "w on the simplex, sum w = 1, over one vector per value (Rewarded Soups)"
    order = 1
    constraint = "rows summing to 1"

    def grid_size(self, space: "SearchSpace") -> int:
        k = round(1.0 / space.step)  # compositions of k steps into n parts, when step divides 1
        return math.comb(k + space.n_values - 1, space.n_values - 1) if abs(k * space.step - 1.0) < 1e-9 else 0

    def keep(self, mesh: np.ndarray) -> np.ndarray:
        return mesh[np.abs(mesh.sum(axis=1) - 1.0) < 1e-9]

    def check(self, w: np.ndarray) -> None:
        if abs(w.sum() - 1.0) > 1e-6:
            raise WeightsError(f"weights {w.tolist()} sum to {w.sum():.6g}; simplex weights must sum to 1")

    def contains(self, row: "ComparedMethod", vector_hashes: tuple[str, ...], weights: tuple[float, ...]) -> bool:
        return tuple(vector_hashes) == row.vector_hashes and abs(sum(weights) - 1.0) <= 1e-6

    def label(self, n_vectors: int) -> str:
        return "simplex (Σ w = 1, SOUP)"


class DecodeTime(Extrapolation):
    """MOD (Shi et al. 2024): the extrapolation grid's weights, composed at decoding time: per token the
    log-probs (1 − Σ w_i) log π_base + Σ w_i log π_i of the base and each value's model, renormalised
    (mva_core.decode_time). A candidate is n + 1 models decoded together, so it has no merged model to export."""

    name = "decode-time"
    description = "w in [0, C]^n, per token (1 - sum w) log p_base + sum w_i log p_i (MOD, decode-time)"
    order = 1
    searchable = True
    mixes_at_decoding = True
    decoding_tag = "decode-time"

    def label(self, n_vectors: int) -> str:
        return "decode-time mixture [0, C]^n (MOD)"

    def sweep_kinds(self) -> list[str]:
        return [self.name]

    def rows_per_token(self, n_vectors: int) -> int:
        return n_vectors + 1  # the base and each value's model, every token


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

    one_vector_per_value = False

    def contains(self, row: "ComparedMethod", vector_hashes: tuple[str, ...], weights: tuple[float, ...]) -> bool:
        return len(vector_hashes) == 1 and vector_hashes[0] in row.vector_hashes and tuple(weights) == (1.0,)


class Conditioned(_OneAtATime):
    """One policy at weight 1, evaluated with each evaluation preference p (MI-EPO) written into its prompt."""

    name = "conditioned"
    description = "one policy at weight 1 with the evaluation preference p in its prompt (MO-ODPO, MI-EPO)"
    order = 2
    preference_in_prompt = True

    def points(self, row: "ComparedMethod") -> Iterator[WeightSet]:
        n_values = len(policy_values(row.vector_dirs[0]))
        from .pareto import preference_vectors  # pymoo underneath: loaded when a grid is enumerated

        yield row.vector_dirs, preference_vectors(n_values) if n_values else np.zeros((0, 0))

    def label(self, n_vectors: int) -> str:
        return "its policy with each evaluation preference p in the prompt"

    def value_weights(self, row: "ComparedMethod", vector_hashes: Sequence[Sequence[str]],
                      preferences: Sequence[object], n_values: int) -> list[list[float]] | None:
        """The preference p each candidate's prompt carried."""
        return [list(p) if isinstance(p, list) and len(p) == n_values else [np.nan] * n_values for p in preferences]

    def row_space(self, n: int, C: float) -> "SearchSpace":
        return SearchSpace(n_values=n, C=1.0, step=1.0, kind=SIMPLEX)  # each row is a preference p: on the simplex

    def preference(self, row: Sequence[float]) -> tuple[float, ...] | None:
        return tuple(float(w) for w in row)

    def candidate_weights(self, row: Sequence[float]) -> tuple[float, ...]:
        return (1.0,)  # the policy alone: p is in its prompt

    def candidate_values(self, row_names: tuple[str, ...], vectors: Sequence[ValueVector]) -> tuple[str, ...]:
        return (vectors[0].value,)

    def prompt_conditioning(self, vectors: Sequence[ValueVector]) -> PromptConditioning | None:
        return self.conditioning(vectors)

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
    several_models = True

    def points(self, row: "ComparedMethod") -> Iterator[WeightSet]:
        for d in row.vector_dirs:  # several models, each evaluated on its own
            yield (d,), np.ones((1, 1))

    def label(self, n_vectors: int) -> str:
        return f"each of its {n_vectors} models alone (w = 1)"

    def value_weights(self, row: "ComparedMethod", vector_hashes: Sequence[Sequence[str]],
                      preferences: Sequence[object], n_values: int) -> list[list[float]] | None:
        """One model per preference: the preference its vector was trained for (its mva_vector.json)."""
        trained = {}
        for d, h in zip(row.vector_dirs, row.vector_hashes):
            meta = d / META_FILE
            pref = json.loads(meta.read_text()).get("preference") if meta.is_file() else None
            if isinstance(pref, list) and len(pref) == n_values:
                trained[h] = pref
        return [list(trained.get(hashes[0], [np.nan] * n_values)) for hashes in vector_hashes]

    def row_names(self, value_names: Sequence[str], vectors: Sequence[ValueVector]) -> tuple[str, ...]:
        return tuple(v.value for v in vectors)  # weights per vector, named after them

    def row_space(self, n: int, C: float) -> "SearchSpace":
        return SearchSpace(n_values=n, C=max(1.0, float(C)), step=1.0)


class Vertices(_Fixed):
    """Each value's vector alone at weight 1: one row per value ("dpo-<value>"), `row.vertex` says which."""

    name = "vertices"
    description = "each value's vector alone at weight 1 (paper rows DPO-<value>)"
    order = 4

    def rows(self, name: str, vector_dirs: tuple[Path, ...], vector_hashes: tuple[str, ...],
             value_names: Sequence[str]) -> list["ComparedMethod"]:
        return [ComparedMethod(f"{name}-{v}", name, self.name, vector_dirs, vector_hashes, vertex=i)
                for i, v in enumerate(value_names)]

    def label(self, n_vectors: int) -> str:
        return "its value's vector alone (w = 1)"

    def points(self, row: "ComparedMethod") -> Iterator[WeightSet]:
        yield row.vector_dirs, np.eye(len(row.vector_dirs))[[row.vertex]]

    def contains(self, row: "ComparedMethod", vector_hashes: tuple[str, ...], weights: tuple[float, ...]) -> bool:
        return (tuple(vector_hashes) == row.vector_hashes
                and all(w == (1.0 if i == row.vertex else 0.0) for i, w in enumerate(weights)))


EXTRAPOLATION, SIMPLEX, CONDITIONED, EACH, VERTICES = Extrapolation(), Simplex(), Conditioned(), Each(), Vertices()
DECODE_TIME = DecodeTime()
KINDS: dict[str, CompositionKind] = {k.name: k for k in (EXTRAPOLATION, SIMPLEX, DECODE_TIME, CONDITIONED, EACH,
                                                         VERTICES)}
# the grids of weights in the model (a sweep's --kind): a decode-time row keeps its own
GRID_KINDS: list[str] = [k.name for k in KINDS.values() if isinstance(k, GridKind) and not k.mixes_at_decoding]


def off_simplex(weights: Sequence[Sequence[float]]) -> np.ndarray:
    """(K,) bool: which weight rows lie off the simplex, |Σ_i w_i − 1| > 1e-9 (what extrapolation adds to SOUP's
    interpolation, MVA Eq.15–18); a row with a non-finite weight is not marked."""
    sums = np.array([np.sum(np.asarray(w, dtype=np.float64)) if len(w) else np.nan for w in weights], dtype=np.float64)
    return np.isfinite(sums) & (np.abs(sums - 1.0) > 1e-9)


def get_kind(name: str) -> CompositionKind:
    """The kind registered as `name`; an unknown name raises listing the valid ones."""
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"composition kind {name!r} is unknown; choose one of {list(KINDS)}") from None


def evaluated_as(vectors: Sequence[ValueVector], n_values: int,
                 method_kind: CompositionKind | None = None) -> CompositionKind:
    """The kind whose rows a vector set's evaluation takes (sweep.Evaluator): a preference-conditioned policy's (each
    row a preference p over the values), one vector per value (each row value weights; mixed per token when the
    method's kind `method_kind` mixes at decoding, MOD), or vectors on their own (each row per-vector weights,
    named after them)."""
    if method_kind is not None and method_kind.mixes_at_decoding and len(vectors) == n_values:
        return method_kind
    if CONDITIONED.is_policy(vectors):
        return CONDITIONED
    return EXTRAPOLATION if len(vectors) == n_values else EACH


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

    def contains(self, vector_hashes: tuple[str, ...], weights: tuple[float, ...], decoding: str = "") -> bool:
        """Is a stored candidate (its vectors, weights and stored decoding) a point of this method?"""
        return self.kind.decodes(decoding) and self.kind.contains(self, vector_hashes, weights)

    def on_grid(self, kind: str) -> "ComparedMethod":
        """This row swept on the grid kind `kind` instead (a grid row only: the others have their fixed points)."""
        return ComparedMethod(self.name, self.method, get_kind(kind).name, self.vector_dirs, self.vector_hashes,
                              self.vertex) if self.kind.has_grid else self


@dataclass
class SearchSpace(Record):
    """The weight space S of MVA Eq.15: the points of a grid kind over a uniform lattice, the box `[0, C]^n`
    (extrapolation) or its rows summing to 1 (simplex, SOUP). Stored (a run's config) with its kind's name."""

    n_values: int = field(default=2, metadata={"help": "Number of value vectors composed."})
    C: float = field(default=1.0, metadata={"help": "Upper bound of every weight (paper: C = 1). Weights > 1 allowed."})
    step: float = field(default=0.25, metadata={"help": "Grid step of the sweep."})
    kind: GridKind = field(
        default=EXTRAPOLATION, metadata={"help": "The grid kind, or its name: 'extrapolation': [0,C]^n grid (MVA); "
                                                 "'simplex': sum w = 1 (SOUP)."}
    )

    def __post_init__(self) -> None:
        kind = KINDS.get(self.kind) if isinstance(self.kind, str) else self.kind  # a name (JSON, CLI): resolved once
        if not isinstance(kind, GridKind):
            raise ConfigError(f"kind={getattr(self.kind, 'name', self.kind)!r}: choose "
                              + " or ".join(repr(k) for k in GRID_KINDS))
        self.kind = kind
        self.check_types()
        if self.n_values < 1:
            raise ConfigError(f"n_values={self.n_values}: need at least one value vector")
        if not (math.isfinite(self.C) and self.C > 0):
            raise ConfigError(f"C={self.C}: the weight bound must be a positive finite number (paper: 1)")
        if not (math.isfinite(self.step) and 0 < self.step <= self.C):
            raise ConfigError(f"step={self.step}: must be in (0, C={self.C}]; e.g. 0.1")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"kind": self.kind.name}

    def check(self, weights: Any) -> np.ndarray:
        """Validate one weight vector against S; returns it as float64. Raises WeightsError naming the fix."""
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape[0] != self.n_values:
            raise WeightsError(
                f"weights {w.tolist()} have {w.shape[0]} entries but there are {self.n_values} value vectors; "
                f"give one weight per value"
            )
        if not np.all(np.isfinite(w)):
            raise WeightsError(f"weights {w.tolist()} contain NaN or inf; every weight must be a number in [0, {self.C}]")
        bad = [(i, float(x)) for i, x in enumerate(w) if x < 0 or x > self.C + 1e-12]
        if bad:
            i, x = bad[0]
            raise WeightsError(f"weight {i} = {x} is outside [0, C={self.C}]; choose a value in range or raise C")
        self.kind.check(w)
        return w

    def ticks(self) -> np.ndarray:
        """The grid values of one weight: 0, step, 2·step, … up to C (C included)."""
        ticks = np.round(np.arange(0.0, self.C + self.step / 2, self.step), 10)
        return ticks[ticks <= self.C + 1e-9]

    def grid_size(self) -> int:
        """How many points `grid()` has, counted without building it (its kind counts)."""
        return self.kind.grid_size(self)

    def grid(self, max_points: int = MAX_GRID_POINTS) -> np.ndarray:
        """All grid points of S, shape (K, n), as its kind enumerates them: uniform steps of `step` from 0 to C (C
        included). A grid of more than `max_points` points is refused before it is built (GridTooLargeError)."""
        return self.kind.grid(self, max_points)
