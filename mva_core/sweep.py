"""Evaluate candidates (weights -> responses -> scores -> store), with caching; grid sweeps.

`Evaluator` holds one base model, one weight-batched view over a method's value vectors, and the
workspace's scorers. `evaluate(W)` answers stored candidates from SQLite and generates all missing
ones in one weight-batched generation (each row its own weights), then scores only what is unscored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .compose import WeightBatchedModel
from .generate import generate_responses
from .config import SearchSpace
from .models import BaseModel, load_base
from .scorers import get_scorer
from .store import CandidateSpec, prompts_hash
from .vectors import ValueVector, check_compatible, load_value_vector
from .workspace import Workspace

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
        self.vectors = list(vectors) if vectors is not None else [load_value_vector(d) for d in workspace.vector_dirs(method)]
        check_compatible(self.vectors, self.base.model, self.base.fingerprint)
        self.model = WeightBatchedModel(self.base.model, self.vectors)
        self.prompts = workspace.prompts()
        self.decoding = workspace.manifest.decoding
        self.space = workspace.space()

    def spec(self, weights: Sequence[float], source: str) -> CandidateSpec:
        return CandidateSpec(
            method=self.method, source=source, value_names=tuple(self.ws.value_names),
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
    config = {"method": evaluator.method, "grid": np.asarray(grid).tolist(), "chunk": chunk,
              **({"space": space.to_dict()} if space is not None else {})}
    run_id = evaluator.ws.store.start_run("sweep", config, evaluator.method)
    ids: list[int] = []
    generated = 0
    try:
        for start in range(0, len(grid), chunk):
            res = evaluator.evaluate(grid[start:start + chunk], "sweep", progress=progress, run_id=run_id)
            ids += res.candidate_ids
            generated += res.generated
            if progress:
                progress("candidates", min(start + chunk, len(grid)), len(grid))
    except BaseException as exc:
        evaluator.ws.store.finish_run(run_id, "stopped", {"candidates": len(ids), "generated": generated,
                                                          "error": repr(exc)})
        raise
    evaluator.ws.store.finish_run(run_id, "done", {"candidates": len(ids), "generated": generated})
    return Evaluation(candidate_ids=ids, generated=generated)
