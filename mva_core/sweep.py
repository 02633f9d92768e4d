"""Evaluate candidates (weights -> responses -> scores -> store), with caching; grid sweeps.

`Evaluator` holds one base model, one weight-batched view over a method's value vectors, and the
workspace's scorers. `evaluate(W)` answers stored candidates from SQLite and generates all missing
ones in one weight-batched generation (each row its own weights), then scores only what is unscored.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence, TypeVar

import numpy as np

from .compose import WeightBatchedModel
from .generate import Cancelled, generate_samples
from .config import ConfigError, DecodingConfig
from .kinds import SearchSpace, evaluated_as
from .methods import JobExecutor, available_methods, get_method
from .models import BaseModel, load_base
from .errors import MVAError
from .scorers import ScorerFailedError, get_scorer, scorer_key, stored_key
from .results import load_table
from .store import SAMPLED_EVALUATION, CandidateSpec, prompts_hash
from .vectors import ValueVector, check_compatible, load_value_vector
from .table import BASE_METHOD
from .workspace import Workspace, WorkspaceError

StageProgress = Callable[[str, int, int], None]  # (stage, done, total)



@dataclass
class Evaluation:
    candidate_ids: list[int]
    generated: int  # how many candidates had to be generated (the rest were cache hits)
    generate_seconds: float = 0.0  # wall seconds spent generating them (scoring and storing not counted)
    method: str = ""  # the comparison row the candidates were evaluated as
    workspace: Workspace | None = field(default=None, repr=False)

    def z(self) -> np.ndarray:
        """(K, V) the candidates' z-scores against the base model (the candidate table's, DESIGN "Metrics"), in the
        order of `candidate_ids`: what a caller reads instead of recomputing them."""
        if self.workspace is None:
            raise ValueError("this Evaluation was made without its workspace; Evaluator.evaluate and sweep_groups "
                             "fill it")
        return load_table(self.workspace).for_method(self.method).take(self.candidate_ids).z()


class Evaluator:
    """Evaluates candidates of one method's vector set on the workspace's prompts and scorers."""

    def __init__(self, workspace: Workspace, method: str, base: BaseModel | None = None,
                 vectors: Sequence[ValueVector] | None = None):
        self.ws = workspace
        self.method = method
        self.base = base or load_base(workspace.manifest.base)
        if vectors is None:
            compared = workspace.compared_method(method)
            if compared.kind.several_models:
                raise WorkspaceError(f"method {method!r} has one model per vector; evaluate them with sweep_method, "
                                     "or pass vectors=[one value vector]")
            vectors = [load_value_vector(d) for d in compared.vector_dirs]
        self.vectors = list(vectors)
        # How a row of weights becomes a candidate (kinds.evaluated_as): one vector per value, weights per value; a
        # preference-conditioned policy (MO-ODPO, MI-EPO), each row the preference p its prompt carries; otherwise
        # (a vector trained for a preference, or on all values in turn) weights per vector, named after them.
        # a registered method whose kind mixes at decoding (MOD) decodes its rows that way, over the same vectors
        registered = get_method(method).kind if method in available_methods() else None
        self.kind = evaluated_as(self.vectors, len(workspace.value_names), registered)
        # how a conditioned policy reads p in its prompt (MO-ODPO's weights, RiC's desired rewards); else None
        self.conditioning = self.kind.prompt_conditioning(self.vectors)
        check_compatible(self.vectors, self.base.model, self.base.fingerprint)
        self.model = WeightBatchedModel(self.base.model, self.vectors)
        self.prompts = workspace.prompts()
        self.decoding = workspace.manifest.decoding
        self.value_names = self.kind.row_names(workspace.value_names, self.vectors)
        self.space = self.kind.row_space(len(self.value_names), workspace.manifest.C)

    @property
    def rows_per_token(self) -> int:
        """Model rows one sequence runs per generated token: 1, or n + 1 for a decode-time mixture (MOD)."""
        return self.kind.rows_per_token(len(self.vectors))

    def decoding_for(self, preference: Sequence[float] | None) -> DecodingConfig:
        """The workspace's decoding; for a conditioned policy with p written into its system message (the way
        the policy reads p: `self.conditioning`)."""
        if preference is None:
            return self.decoding
        return replace(self.decoding, system_prompt=self.conditioning.text(preference, self.value_names,
                                                                           self.decoding.system_prompt))

    def on_prompts(self, prompts: Sequence[str]) -> "Evaluator":
        """This evaluator on another prompt set, sharing the model (the shared one is not changed). Its candidates
        are keyed by those prompts, so they never answer for, or overwrite, candidates of another set."""
        other = copy.copy(self)
        other.prompts = list(prompts)
        return other

    def with_decoding(self, decoding: DecodingConfig) -> "Evaluator":
        """This evaluator with another decoding config, sharing the model. Its candidates are keyed by that
        decoding (`spec`), so they never answer for, or overwrite, the workspace decoding's candidates."""
        other = copy.copy(self)
        other.decoding = decoding
        return other

    def spec(self, weights: Sequence[float], source: str) -> CandidateSpec:
        """The candidate of one row of weights; for a conditioned policy the row is its preference p."""
        p = self.kind.preference(weights)
        return CandidateSpec(
            method=self.method, source=source,
            value_names=self.kind.candidate_values(self.value_names, self.vectors),
            weights=self.kind.candidate_weights(weights),
            vector_hashes=tuple(v.hash for v in self.vectors),
            base_fingerprint=self.base.fingerprint, prompts_hash=prompts_hash(self.prompts),
            decoding=self.kind.decoded_as(self.decoding_for(p).fingerprint()), preference=p,
        )

    def stored(self, weights: np.ndarray | Sequence[Sequence[float]]) -> dict[int, int]:
        """Row index -> candidate id for the rows of `weights` already in the store (any source)."""
        W = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        keys = [self.spec(w, "").key for w in W]  # the key ignores `source`
        found = self.ws.store.find(keys)
        return {i: found[k] for i, k in enumerate(keys) if k in found}

    def generate(self, W: np.ndarray, progress: StageProgress | None = None,
                 cancel: threading.Event | None = None) -> list[list[list[str]]]:
        """Responses [row][prompt][sample] for the rows of `W` (one sample each when greedy): one weight-batched
        generate call over all rows; a conditioned policy one call per p (its prompt differs). Sampled responses are
        seeded by each candidate's key (`generate.row_seed`). What an executor's worker runs."""
        tokens = (lambda d, t: progress("generate", d, t)) if progress else None
        keys = [self.spec(w, "").key for w in W]
        if not self.kind.preference_in_prompt:
            return generate_samples(self.model, self.base.tokenizer, self.prompts, W, self.decoding, tokens, cancel,
                                    identities=keys, decode_time=self.kind.mixes_at_decoding)
        return [generate_samples(self.model, self.base.tokenizer, self.prompts, np.ones((1, 1)),
                                 self.decoding_for(w), tokens, cancel, identities=[key])[0] for w, key in zip(W, keys)]

    def evaluate(self, weights: np.ndarray | Sequence[Sequence[float]], source: str = "sweep",
                 progress: StageProgress | None = None, run_id: int | None = None,
                 space: SearchSpace | None = None, extra_scorers: Sequence[str] = (),
                 cancel: threading.Event | None = None,
                 generated: Callable[[np.ndarray], list[list[list[str]]]] | None = None) -> Evaluation:
        """Candidate ids for each row of `weights` (K, n), generating and scoring only what is missing.
        `space` (default the workspace's, C from workspace.json) bounds the weights; `extra_scorers` are scored
        besides the values' scorers; `cancel` set stops generation at the next token (nothing of it stored).
        `generated(W_missing)` supplies the responses instead of generating here (an executor's workers)."""
        W = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        W = np.stack([(space or self.space).check(w) for w in W])  # raises WeightsError naming the bad weight
        ids = self.stored(W)
        todo = [i for i in range(len(W)) if i not in ids]
        seconds = 0.0
        if todo:
            t0 = time.perf_counter()
            responses = generated(W[todo]) if generated else self.generate(W[todo], progress, cancel)
            seconds = time.perf_counter() - t0
            for n, (i, resp) in enumerate(zip(todo, responses)):
                ids[i] = store_candidate(self.ws, self.spec(W[i], source), self.prompts, resp, self.decoding, run_id)
                if progress:
                    progress("store", n + 1, len(todo))
        ids = [ids[i] for i in range(len(W))]
        score_missing(self.ws, ids, progress, extra_scorers)
        return Evaluation(candidate_ids=ids, generated=len(todo), generate_seconds=seconds, method=self.method,
                          workspace=self.ws)


def store_candidate(ws: Workspace, spec: CandidateSpec, prompts: Sequence[str], responses: list[list[str]],
                    decoding: DecodingConfig, run_id: int | None = None) -> int:
    """Store one candidate's responses [prompt][sample]: sample 0 of each prompt as its response, and when decoded
    by sampling every sample too (the per-sample scores of CRD are kept for them)."""
    return ws.store.add_candidate(spec, prompts, [r[0] for r in responses], run_id=run_id,
                                  samples=responses if decoding.do_sample else None)


def score_missing(ws: Workspace, candidate_ids: Sequence[int], progress: StageProgress | None = None,
                  extra_scorers: Sequence[str] = ()) -> None:
    """Score every (candidate, scorer) pair not yet in the store, for the values' scorers and `extra_scorers`;
    each scorer sees all its rows in one call. Scores are stored under the scorer's content key
    (`scorers.scorer_key`): a reward model whose files changed since counts as a new scorer, and scores anew
    (a reward model is loaded only when something is missing). A sampled candidate's every sample is scored, and
    its per-prompt score is the mean over its samples (store.add_sample_scores)."""
    unique = sorted(set(candidate_ids))
    scorers = list(dict.fromkeys([v.scorer for v in ws.manifest.values] + list(extra_scorers)))
    for n, scorer in enumerate(scorers):
        key = scorer_key(scorer) or stored_key(scorer, get_scorer(scorer))  # None: a hub id not here yet: load it
        missing = sorted(set(unique) - ws.store.scored(unique, key))
        if missing:
            samples = ws.store.samples(missing)
            rows = ws.store.responses(sorted(set(missing) - set(samples["candidate_id"].astype(int))))
            scores, key = _score(scorer, rows["prompt"].tolist() + samples["prompt"].tolist(),
                                 rows["response"].tolist() + samples["response"].tolist(), len(missing))
            if len(rows):
                ws.store.add_scores_batch(key, {int(cid): scores[grp.index.to_numpy()]
                                                for cid, grp in rows.groupby("candidate_id", sort=False)})
            if len(samples):
                ws.store.add_sample_scores(key, samples[["candidate_id", "prompt_idx", "sample_idx"]].to_numpy(),
                                           scores[len(rows):])
        if progress:
            progress("score", n + 1, len(scorers))


def _score(scorer: str, prompts: list[str], responses: list[str], n_candidates: int) -> tuple[np.ndarray, str]:
    """One scorer over rows, and the key to store them under (that of the model that scored them); a scorer that
    raises (a reward model, a registered class: code from elsewhere) stops the work with one line naming it, its
    responses already stored."""
    fn = get_scorer(scorer)
    try:
        return fn.score(prompts, responses), stored_key(scorer, fn)
    except MVAError:
        raise
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"
        raise ScorerFailedError(
            f"scorer {scorer!r} failed on {len(responses)} responses of {n_candidates} candidates "
            f"({type(exc).__name__}: {reason}); their responses are stored and finished chunks kept: fix the scorer "
            "(or the value's scorer in workspace.json) and run again to resume") from exc


def evaluate_base(ws: Workspace, base: BaseModel | None = None, progress: StageProgress | None = None,
                  prompts: Sequence[str] | None = None, extra_scorers: Sequence[str] = ()) -> int:
    """The base model's own candidate (no vectors) on `prompts` (default the workspace's): the reference for
    z-normalisation and plots."""
    base = base or load_base(ws.manifest.base)
    prompts = ws.prompts() if prompts is None else list(prompts)
    spec = CandidateSpec(method=BASE_METHOD, source="base", value_names=tuple(ws.value_names), weights=(),
                         vector_hashes=(), base_fingerprint=base.fingerprint, prompts_hash=prompts_hash(prompts),
                         decoding=ws.manifest.decoding.fingerprint())
    found = ws.store.find([spec.key])
    if spec.key in found:
        cid = found[spec.key]
    else:
        resp = generate_samples(base.model, base.tokenizer, prompts, None, ws.manifest.decoding,
                                progress=(lambda d, t: progress("generate", d, t)) if progress else None,
                                identities=[spec.key])[0]
        cid = store_candidate(ws, spec, prompts, resp, ws.manifest.decoding)
    score_missing(ws, [cid], progress, extra_scorers)
    return cid


def sweep(evaluator: Evaluator, grid: np.ndarray, chunk: int = 8, progress: StageProgress | None = None,
          space: SearchSpace | None = None) -> Evaluation:
    """Evaluate a whole grid in chunks (each chunk is stored before the next starts, so a killed sweep
    resumes where it stopped). Progress reports the stages inside a chunk and then ("candidates", done, total).
    A run that is interrupted (also by Streamlit stopping the script) is recorded as "stopped"."""
    return sweep_groups(evaluator.method, [(evaluator, np.asarray(grid))], chunk, progress, space)


def method_groups(ws: Workspace, method: str, step: float, kind: str | None = None, base: BaseModel | None = None,
                  evaluator: Callable[[str, tuple[Path, ...]], Evaluator] | None = None, C: float | None = None,
                  values: Sequence[str] | None = None, prompts: Sequence[str] | None = None,
                  ) -> list[tuple[Evaluator, np.ndarray]]:
    """(evaluator, weights) groups that make up `method`'s candidates (Workspace.compared_methods): its grid
    with `step` and bound `C` (default workspace.json's; `kind` overrides extrapolation/simplex for a per-value
    vector set), a vertex, or each of its vectors alone. `values` (a subset of the workspace's) sweeps only
    those values' weights, the others fixed at 0; `prompts` evaluates on another prompt set.
    `evaluator(method, vector_dirs)` lets the app reuse cached evaluators."""
    compared = ws.compared_method(method)
    if kind is not None:
        compared = compared.on_grid(kind)
    active = None
    if values is not None and list(values) != ws.value_names:
        if not values or any(v not in ws.value_names for v in values):
            raise ConfigError(f"values to sweep {list(values)}: choose one or more of {ws.value_names}")
        active = [ws.value_names.index(v) for v in values]
    base = base or (None if evaluator else load_base(ws.manifest.base))

    def make(dirs: tuple[Path, ...]) -> Evaluator:
        ev = evaluator(method, dirs) if evaluator is not None else \
            Evaluator(ws, method, base=base, vectors=[load_value_vector(d) for d in dirs])
        return ev if prompts is None else ev.on_prompts(prompts)

    C = float(ws.manifest.C) if C is None else float(C)
    return [(make(dirs), W) for dirs, W in compared.weight_sets(C, step, active)]


def seconds_per_candidate(ws: Workspace) -> float | None:
    """Wall seconds per generated candidate of this workspace's most recent finished sweep (None if none)."""
    runs = ws.store.runs()
    for run in runs[(runs["kind"] == "sweep") & (runs["status"] == "done")].iloc[::-1].itertuples():
        generated = json.loads(run.log or "{}").get("generated", 0)
        if generated and run.finished:
            return float(run.finished - run.started) / generated
    return None


Supplied = Callable[[np.ndarray], list[list[list[str]]]] | None  # a chunk's missing rows -> their responses
T = TypeVar("T")


class Executor(JobExecutor, Protocol):
    """Where the responses of a run's chunks are generated (a sweep's grid chunks, a search's batches), and where a
    training job runs (`call`, methods.JobExecutor); the driver alone writes the store. `LocalExecutor` here,
    `executor.RayExecutor` on Ray: the same chunks, the same generate calls, the same responses; the same job, the
    same vectors."""

    def responses(self, jobs: Sequence[tuple[Evaluator, np.ndarray]]) -> Iterator[Supplied]:
        """For each (evaluator, chunk) in order: a function of the chunk's missing rows returning their responses,
        or None: the evaluator generates them in this process (with its progress and cancel)."""
        ...


class LocalExecutor:
    """The default executor: every chunk generated in this process, by its evaluator (`Evaluator.generate`)."""

    def responses(self, jobs: Sequence[tuple[Evaluator, np.ndarray]]) -> Iterator[Supplied]:
        for _ in jobs:
            yield None

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in this process (a training job: with its progress bar)."""
        return fn(*args, **kwargs)

    def shutdown(self) -> None:
        """Nothing to release (the Ray executor's actors are)."""


def sweep_groups(method: str, groups: Sequence[tuple[Evaluator, np.ndarray]], chunk: int = 8,
                 progress: StageProgress | None = None, space: SearchSpace | None = None,
                 extra_scorers: Sequence[str] = (), cancel: threading.Event | None = None,
                 executor: Executor | None = None, source: str = "sweep") -> Evaluation:
    """`sweep` over several (evaluator, grid) groups as one run (a method with one model per vector).
    `space` bounds the weights (default each evaluator's: workspace.json's C); `extra_scorers` also score;
    `cancel` set stops at the next token, keeping every finished chunk; `executor` generates the chunks elsewhere
    (e.g. `executor.RayExecutor`), in the same chunks as here, so the responses are the same. `source` is what the
    new candidates are stored as (`store.SAMPLED_EVALUATION` for `sampled_evaluation`)."""
    if not groups:
        raise WorkspaceError(f"method {method!r} has no candidates to evaluate")
    if chunk < 1:
        raise ConfigError(f"chunk = {chunk}: candidates per generate call must be >= 1, e.g. 8")
    ws = groups[0][0].ws
    total = sum(len(W) for _, W in groups)
    prompts = groups[0][0].prompts
    config = {"method": method, "grid": [w for _, W in groups for w in np.asarray(W).tolist()], "chunk": chunk,
              "n_prompts": len(prompts), "prompts_hash": prompts_hash(prompts),
              **({"space": space.to_dict()} if space is not None else {}),
              **({"extra_scorers": list(extra_scorers)} if extra_scorers else {}),
              **({"source": source, "decoding": groups[0][0].decoding.to_dict()} if source != "sweep" else {})}
    ids: list[int] = []
    generated, seconds = 0, 0.0
    # a conditioned policy generates each p in its own call anyway (its prompt differs): each is stored when done
    sizes = [1 if ev.kind.preference_in_prompt else chunk for ev, _ in groups]
    jobs = [(ev, W[start:start + size]) for (ev, W), size in zip(groups, sizes) for start in range(0, len(W), size)]
    with ws.store.run("sweep", config, method, adopt=True) as run:  # a rerun of a killed sweep takes it over
        supplied = (executor or LocalExecutor()).responses(jobs)
        for (ev, part), responses in zip(jobs, supplied):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"sweep stopped by request after {len(ids)} of {total} candidates; they are kept")
            res = ev.evaluate(part, source, progress=progress, run_id=run.id, space=space,
                              extra_scorers=extra_scorers, cancel=cancel, generated=responses)
            ids += res.candidate_ids
            generated += res.generated
            seconds += res.generate_seconds
            # the cost of a candidate (metrics.generation_cost): generation seconds and model rows per token
            run.log.update(candidates=len(ids), generated=generated, generate_seconds=seconds,
                           rows_per_token=ev.rows_per_token)
            if progress:
                progress("candidates", len(ids), total)
        run.log.update(candidates=len(ids), generated=generated, generate_seconds=seconds)
    return Evaluation(candidate_ids=ids, generated=generated, generate_seconds=seconds, method=method,
                      workspace=ws)


def sampled_decoding(decoding: DecodingConfig, samples: int = 3, temperature: float = 0.7, top_p: float = 0.95,
                     seed: int = 0) -> DecodingConfig:
    """`decoding` (its lengths, batch size and system prompt) made sampled for CRD: `samples` responses per prompt
    at `temperature` and nucleus mass `top_p`, each with its own seed derived from `seed` (DecodingConfig)."""
    return replace(decoding, do_sample=True, num_samples=samples, temperature=temperature, top_p=top_p, seed=seed)


def sampled_groups(groups: Sequence[tuple[Evaluator, np.ndarray]], decoding: DecodingConfig
                   ) -> list[tuple[Evaluator, np.ndarray]]:
    """The same (evaluator, weights) groups decoded with the sampled `decoding` instead; refuses a decoding that
    gives CRD nothing to measure (greedy, or one sample per prompt)."""
    if not (decoding.do_sample and decoding.num_samples > 1):
        raise ConfigError(f"sampled evaluation: decoding do_sample={decoding.do_sample}, num_samples="
                          f"{decoding.num_samples}; CRD needs several sampled responses per prompt (do_sample=true, "
                          "num_samples >= 2, e.g. `sweep --samples 3`)")
    return [(ev.with_decoding(decoding), W) for ev, W in groups]


def sampled_evaluation(ws: Workspace, method: str, decoding: DecodingConfig, step: float = 0.25,
                       base: BaseModel | None = None, chunk: int = 8,
                       progress: StageProgress | None = None) -> Evaluation:
    """`method`'s candidates (its grid at `step`, or a conditioned policy's evaluation preferences) decoded once
    more with `decoding` (sampled: `do_sample`, `num_samples` responses per prompt; `sampled_decoding`), on the
    workspace's prompts, stored as `store.SAMPLED_EVALUATION` candidates: what CRD (MI-EPO) needs when the
    workspace decodes greedily (issue #28 item 2; `sweep --samples N`). Resumable like any sweep: stored candidates
    are not generated again."""
    groups = sampled_groups(method_groups(ws, method, step, base=base), decoding)
    return sweep_groups(method, groups, chunk=chunk, progress=progress, source=SAMPLED_EVALUATION)
