"""Any-time evaluation of one point (issue 31 item 1): an estimate after the first batch of prompts that moves and
tightens as the batches finish, stored only when every prompt is done.

`evaluate_anytime(evaluator, weights)` generates the point's responses a few prompts at a time (a seeded random
order of the prompts, so the first batch is not the file's first topic), scores each batch with the values' scorers
and, after every batch, reports a `LivePoint`: per value the z-score estimate and its 95 % percentile bootstrap
interval over the prompts done so far. The estimate is paired with the base model on the same prompts,

    z_v ≈ mean_{j done} (r_jv − b_jv) / σ_v,

where r_jv is the candidate's reward on prompt j, b_jv the base model's, σ_v the base's population std over all the
prompts (DESIGN "Metrics": z against the base model's responses on the validation prompts). When every prompt is
done this equals the stored z-score (mean_j r_jv − mean_j b_jv) / σ_v exactly; before that it is that mean's
estimate on a random subset, and pairing removes the prompt-to-prompt difficulty both models share. A point stopped
early stays a partial estimate (`LivePoint.partial`): nothing of it is stored, so it never joins a front.

Speed is measured, never guessed: the ETA appears after the first batch, from that batch's decoding rate (token
slots per second: prompts × samples × max_new_tokens over the generation time) and its scoring time per prompt.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .generate import Cancelled, generate_samples
from .metrics import prompt_rewards
from .scorers import ScoreNormaliser
from .sweep import Evaluator, StageProgress, _score, evaluate_base, score_missing, store_candidate

PROMPTS_PER_BATCH = 8  # the first point after 8 prompts: on 2 CPU cores ~1/5 of the demo's 40
N_RESAMPLES = 1000
LEVEL = 0.95


@dataclass
class LivePoint:
    """One point's estimate so far: per value its z-score and 95 % bootstrap interval over the `n_done` prompts done
    (of `n_prompts`); `candidate_id` once stored (all prompts done), None while partial."""

    method: str
    weights: tuple[float, ...]
    value_names: tuple[str, ...]
    n_done: int
    n_prompts: int
    z: np.ndarray  # (V,)
    low: np.ndarray  # (V,)
    high: np.ndarray  # (V,)
    elapsed_s: float
    tokens_per_s: float | None = None  # decoding rate measured so far (None before the first batch is done)
    eta_s: float | None = None  # seconds left at that rate (None before the first batch is done)
    candidate_id: int | None = None
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (n_done, elapsed_s, mean width)

    @property
    def partial(self) -> bool:
        """Not every prompt is done (or the point is not stored yet): an estimate, never a front's point."""
        return self.candidate_id is None

    @property
    def width(self) -> np.ndarray:
        """(V,) the interval widths."""
        return self.high - self.low


def paired_z(cand: np.ndarray, base_same: np.ndarray, base_all: np.ndarray, n_resamples: int = N_RESAMPLES,
             seed: int = 0, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """z estimate and percentile bootstrap interval of a candidate from the prompts done (module docstring).

    `cand` (n, V) its rewards on the n prompts done, `base_same` (n, V) the base model's on the same prompts,
    `base_all` (P, V) the base model's on all prompts (its mean and population std: `ScoreNormaliser`). A non-finite
    base reward counts as the base mean (so with every prompt done the estimate is the table's z, whose base mean
    skips it); a non-finite candidate reward makes that value's estimate NaN, as in the table."""
    norm = ScoreNormaliser().fit(base_all)
    base = np.where(np.isfinite(base_same), base_same, norm.mean)
    D = (np.asarray(cand, dtype=float) - base) / norm.std  # (n, V) paired differences in base-std units
    z = D.mean(axis=0)
    idx = np.random.default_rng(seed).integers(0, len(D), size=(n_resamples, len(D)))  # (B, n)
    Zb = D[idx].mean(axis=1)  # (B, V)
    tail = 100 * (1 - level) / 2
    with np.errstate(invalid="ignore"):
        low, high = np.percentile(Zb, tail, axis=0), np.percentile(Zb, 100 - tail, axis=0)
    return z, low, high


def _generate_part(ev: Evaluator, w: np.ndarray, idx: np.ndarray, progress: StageProgress | None,
                   cancel: threading.Event | None) -> list[list[str]]:
    """Responses [prompt][sample] of the point `w` on the prompts `idx`, seeded as on the whole prompt set (the
    candidate's key and each prompt's index in that set), as `Evaluator.generate` does for one row."""
    key = ev.spec(w, "").key
    prompts = [ev.prompts[i] for i in idx]
    tokens = (lambda d, t: progress("generate", d, t)) if progress else None
    if ev.kind.preference_in_prompt:  # a conditioned policy: the row is p, written into its prompt
        return generate_samples(ev.model, ev.base.tokenizer, prompts, np.ones((1, 1)), ev.decoding_for(w), tokens,
                                cancel, identities=[key], prompt_ids=idx)[0]
    return generate_samples(ev.model, ev.base.tokenizer, prompts, w[None, :], ev.decoding, tokens, cancel,
                            identities=[key], prompt_ids=idx)[0]


def evaluate_anytime(ev: Evaluator, weights: Sequence[float], source: str = "live",
                     prompts_per_batch: int = PROMPTS_PER_BATCH, seed: int = 0, n_resamples: int = N_RESAMPLES,
                     on_point: Callable[[LivePoint], None] | None = None, progress: StageProgress | None = None,
                     cancel: threading.Event | None = None) -> LivePoint:
    """Evaluate one point of `ev`'s method any-time (module docstring): `on_point(point)` after every batch of
    `prompts_per_batch` prompts with the estimate so far, then once more with the stored candidate. A point already
    stored is answered from the store at once. `progress("generate", token, total)` within a batch and
    `progress("prompts", done, total)` after it; `cancel` set stops at the next token (raises `Cancelled`; the last
    point reported stays partial and nothing of it is stored)."""
    if prompts_per_batch < 1:
        raise ValueError(f"prompts_per_batch = {prompts_per_batch}: use at least 1")
    ws, t0 = ev.ws, time.monotonic()
    w = ev.space.check(weights)  # raises WeightsError naming the bad weight
    values = tuple(ws.value_names)
    base_id = evaluate_base(ws, ev.base, prompts=ev.prompts)  # the reference of every z-score (stored once)
    base_all = prompt_rewards(ws, [base_id])[0]  # (P, V)
    P, V = base_all.shape

    def point(R: np.ndarray, done: np.ndarray, **more: object) -> LivePoint:
        z, low, high = paired_z(R[done], base_all[done], base_all, n_resamples, seed)
        return LivePoint(ev.method, tuple(float(x) for x in w), values, int(len(done)), P, z, low, high,
                         time.monotonic() - t0, **more)  # type: ignore[arg-type]

    stored = ev.stored([w])
    if stored:
        cid = stored[0]
        score_missing(ws, [cid])
        final = point(prompt_rewards(ws, [cid])[0], np.arange(P), candidate_id=cid)
        if on_point:
            on_point(final)
        return final

    order = np.random.default_rng(seed).permutation(P)
    batches = [order[i:i + prompts_per_batch] for i in range(0, P, prompts_per_batch)]
    scorers = list(dict.fromkeys(v.scorer for v in ws.manifest.values))
    n_samples = ev.decoding.num_samples if ev.decoding.do_sample else 1
    responses: list[list[str]] = [[] for _ in range(P)]
    per_scorer: dict[str, np.ndarray] = {s: np.full(P, np.nan) for s in scorers}
    keys: dict[str, str] = {}
    R = np.full((P, V), np.nan)
    gen_s = score_s = 0.0
    slots = 0
    history: list[tuple[int, float, float]] = []
    last: LivePoint | None = None
    for k, idx in enumerate(batches):
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"stopped after {k * prompts_per_batch} of {P} prompts; the partial point is not stored")
        t_gen = time.monotonic()
        part = _generate_part(ev, w, idx, progress, cancel)
        gen_s += time.monotonic() - t_gen
        slots += len(idx) * n_samples * ev.decoding.max_new_tokens
        t_score = time.monotonic()
        prompts = [ev.prompts[i] for i in idx for _ in range(n_samples)]
        texts = [r for resp in part for r in resp]
        for s in scorers:
            scores, keys[s] = _score(s, prompts, texts, 1)
            per_scorer[s][idx] = np.asarray(scores, dtype=float).reshape(len(idx), n_samples).mean(axis=1)
        score_s += time.monotonic() - t_score
        for i, resp in zip(idx, part):
            responses[i] = resp
        for v, spec in enumerate(ws.manifest.values):
            R[idx, v] = per_scorer[spec.scorer][idx]
        done = order[:sum(len(b) for b in batches[:k + 1])]
        left = P - len(done)
        rate = slots / gen_s if gen_s > 0 else None
        eta = (left * n_samples * ev.decoding.max_new_tokens / rate + left * score_s / len(done)) if rate else None
        last = point(R, done, tokens_per_s=rate, eta_s=eta)
        history.append((last.n_done, last.elapsed_s, float(np.nanmean(last.width))))
        last.history = list(history)
        if progress:
            progress("prompts", len(done), P)
        if left and on_point:
            on_point(last)

    cid = store_candidate(ws, ev.spec(w, source), ev.prompts, responses, ev.decoding)
    if not ev.decoding.do_sample:  # greedy: the scores computed batch by batch are the candidate's
        for s in scorers:
            ws.store.add_scores_batch(keys[s], {cid: per_scorer[s].tolist()})
    score_missing(ws, [cid])  # sampled: every sample scored and stored (store.add_sample_scores)
    assert last is not None
    final = point(prompt_rewards(ws, [cid])[0], np.arange(P), tokens_per_s=last.tokens_per_s, eta_s=0.0,
                  candidate_id=cid)
    final.history = history[:-1] + [(P, final.elapsed_s, float(np.nanmean(final.width)))]
    if on_point:
        on_point(final)
    return final
