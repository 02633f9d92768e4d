"""Evaluate candidates (weights -> responses -> scores -> store), with caching; grid sweeps.

`Evaluator` holds one base model, one weight-batched view over a method's value vectors, and the
workspace's scorers. `evaluate(W)` answers stored candidates from SQLite and generates all missing
ones in one weight-batched generation (each row its own weights), then scores only what is unscored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .compose import WeightBatchedModel
from .generate import generate_responses
from .config import SearchSpace
from .models import BaseModel, load_base
from .scorers import get_scorer
from .store import CandidateSpec, prompts_hash
from .vectors import ValueVector, check_compatible, load_value_vector
from .workspace import Workspace, WorkspaceError

StageProgress = Callable[[str, int, int], None]  # (stage, done, total)

BASE_METHOD = "base"


@dataclass
class Evaluation:
    candidate_ids: list[int]
    generated: int  # how many candidates had to be generated (the rest were cache hits)


class Evaluator:
    """Evaluates candidates of one method's vector set on the workspace's prompts and scorers."""

    def __init__(self, workspace: Workspace, method: str, base: BaseModel | None = None,
                 vectors: Sequence[ValueVector] | None = None):
        self.ws = workspace
        self.method = method
        self.base = base or load_base(workspace.manifest.base)
        if vectors is None:
            compared = workspace.compared_method(method)
            if compared.composition == "each":
                raise WorkspaceError(f"method {method!r} has one model per vector; evaluate them with sweep_method, "
                                     "or pass vectors=[one value vector]")
            vectors = [load_value_vector(d) for d in compared.vector_dirs]
        self.vectors = list(vectors)
        check_compatible(self.vectors, self.base.model, self.base.fingerprint)
        self.model = WeightBatchedModel(self.base.model, self.vectors)
        self.prompts = workspace.prompts()
        self.decoding = workspace.manifest.decoding
        n = len(workspace.value_names)
        # One vector per value: weights are per value. Otherwise (a vector trained for a preference, or on all
        # values in turn) the weights are per vector and named after them.
        self.value_names = tuple(workspace.value_names) if len(self.vectors) == n else tuple(v.value for v in self.vectors)
        self.space = workspace.space() if len(self.vectors) == n else SearchSpace(
            n_values=len(self.vectors), C=max(1.0, float(workspace.manifest.C)), step=1.0)

    def spec(self, weights: Sequence[float], source: str) -> CandidateSpec:
        return CandidateSpec(
            method=self.method, source=source, value_names=self.value_names,
            weights=tuple(float(w) for w in weights), vector_hashes=tuple(v.hash for v in self.vectors),
            base_fingerprint=self.base.fingerprint, prompts_hash=prompts_hash(self.prompts),
            decoding=self.decoding.fingerprint(),
        )

    def stored(self, weights: np.ndarray | Sequence[Sequence[float]]) -> dict[int, int]:
        """Row index -> candidate id for the rows of `weights` already in the store (any source)."""
        W = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        keys = [self.spec(w, "").key for w in W]  # the key ignores `source`
        found = self.ws.store.find(keys)
        return {i: found[k] for i, k in enumerate(keys) if k in found}

    def evaluate(self, weights: np.ndarray | Sequence[Sequence[float]], source: str = "sweep",
                 progress: StageProgress | None = None, run_id: int | None = None) -> Evaluation:
        """Candidate ids for each row of `weights` (K, n), generating and scoring only what is missing."""
        W = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        W = np.stack([self.space.check(w) for w in W])  # raises WeightsError naming the bad weight
        ids = self.stored(W)
        todo = [i for i in range(len(W)) if i not in ids]
        if todo:
            responses = generate_responses(
                self.model, self.base.tokenizer, self.prompts, W[todo], self.decoding,
                progress=(lambda d, t: progress("generate", d, t)) if progress else None,
            )
            for i, resp in zip(todo, responses):
                ids[i] = self.ws.store.add_candidate(self.spec(W[i], source), self.prompts, resp, run_id=run_id)
        ids = [ids[i] for i in range(len(W))]
        score_missing(self.ws, ids, progress)
        return Evaluation(candidate_ids=ids, generated=len(todo))


def score_missing(ws: Workspace, candidate_ids: Sequence[int], progress: StageProgress | None = None) -> None:
    """Score every (candidate, value) pair not yet in the store; each scorer sees all its rows in one call."""
    unique = sorted(set(candidate_ids))
    for n, value in enumerate(ws.manifest.values):
        missing = sorted(set(unique) - ws.store.scored(unique, value.scorer))
        if missing:
            rows = ws.store.responses(missing)
            scores = get_scorer(value.scorer).score(rows["prompt"].tolist(), rows["response"].tolist())
            ws.store.add_scores_batch(value.scorer, {int(cid): scores[grp.index.to_numpy()]
                                                     for cid, grp in rows.groupby("candidate_id", sort=False)})
        if progress:
            progress("score", n + 1, len(ws.manifest.values))


def evaluate_base(ws: Workspace, base: BaseModel | None = None, progress: StageProgress | None = None) -> int:
    """The base model's own candidate (no vectors): the reference for z-normalisation and plots."""
    base = base or load_base(ws.manifest.base)
    prompts = ws.prompts()
    spec = CandidateSpec(method=BASE_METHOD, source="base", value_names=tuple(ws.value_names), weights=(),
                         vector_hashes=(), base_fingerprint=base.fingerprint, prompts_hash=prompts_hash(prompts),
                         decoding=ws.manifest.decoding.fingerprint())
    found = ws.store.find([spec.key])
    if spec.key in found:
        cid = found[spec.key]
    else:
        resp = generate_responses(base.model, base.tokenizer, prompts, None, ws.manifest.decoding,
                                  progress=(lambda d, t: progress("generate", d, t)) if progress else None)[0]
        cid = ws.store.add_candidate(spec, prompts, resp)
    score_missing(ws, [cid], progress)
    return cid


def sweep(evaluator: Evaluator, grid: np.ndarray, chunk: int = 8, progress: StageProgress | None = None,
          space: SearchSpace | None = None) -> Evaluation:
    """Evaluate a whole grid in chunks (each chunk is stored before the next starts, so a killed sweep
    resumes where it stopped). Progress reports the stages inside a chunk and then ("candidates", done, total).
    A run that is interrupted (also by Streamlit stopping the script) is recorded as "stopped"."""
    return sweep_groups(evaluator.method, [(evaluator, np.asarray(grid))], chunk, progress, space)


def method_groups(ws: Workspace, method: str, step: float, kind: str | None = None, base: BaseModel | None = None,
                  evaluator: Callable[[str, tuple[Path, ...]], Evaluator] | None = None) -> list[tuple[Evaluator, np.ndarray]]:
    """(evaluator, weights) groups that make up `method`'s candidates (Workspace.compared_methods): its grid
    with `step` (`kind` overrides extrapolation/simplex for a per-value vector set), a vertex, or each of its
    vectors alone. `evaluator(method, vector_dirs)` lets the app reuse cached evaluators."""
    compared = ws.compared_method(method)
    if kind is not None and compared.composition in ("extrapolation", "simplex"):
        compared = replace(compared, composition=kind)
    base = base or (None if evaluator else load_base(ws.manifest.base))

    def make(dirs: tuple[Path, ...]) -> Evaluator:
        if evaluator is not None:
            return evaluator(method, dirs)
        return Evaluator(ws, method, base=base, vectors=[load_value_vector(d) for d in dirs])

    return [(make(dirs), W) for dirs, W in compared.weight_sets(float(ws.manifest.C), step)]


def sweep_groups(method: str, groups: Sequence[tuple[Evaluator, np.ndarray]], chunk: int = 8,
                 progress: StageProgress | None = None, space: SearchSpace | None = None) -> Evaluation:
    """`sweep` over several (evaluator, grid) groups as one run (a method with one model per vector)."""
    if not groups:
        raise WorkspaceError(f"method {method!r} has no candidates to evaluate")
    ws = groups[0][0].ws
    total = sum(len(W) for _, W in groups)
    config = {"method": method, "grid": [w for _, W in groups for w in np.asarray(W).tolist()], "chunk": chunk,
              **({"space": space.to_dict()} if space is not None else {})}
    run_id = ws.store.start_run("sweep", config, method)
    ids: list[int] = []
    generated = 0
    try:
        for ev, W in groups:
            for start in range(0, len(W), chunk):
                res = ev.evaluate(W[start:start + chunk], "sweep", progress=progress, run_id=run_id)
                ids += res.candidate_ids
                generated += res.generated
                if progress:
                    progress("candidates", len(ids), total)
    except BaseException as exc:
        ws.store.finish_run(run_id, "stopped", {"candidates": len(ids), "generated": generated, "error": repr(exc)})
        raise
    ws.store.finish_run(run_id, "done", {"candidates": len(ids), "generated": generated})
    return Evaluation(candidate_ids=ids, generated=generated)
