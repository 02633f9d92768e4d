"""Find my weights by picking answers (issue 29 item 3): a posterior over weight directions from "which answer is
better?" picks, the next pair to ask about, and the recommendation.

The user is shown one prompt answered by two candidates a and b and says "A", "B" or "about the same". Model: a
direction u on the positive orthant (‖u‖₂ = 1) is the user's trade-off; a response's utility is β u·z, z its reward
vector z-scored against the base model on that prompt. Picks follow the Bradley–Terry model with ties of Davidson
(1970, "On extending the Bradley-Terry model to accommodate ties in paired comparison experiments", JASA 65):
with d = β u·(z_a − z_b),

    P(A) = 1 / (1 + e^{−d} + ν e^{−d/2}),   P(B) = P(A)|_{d → −d},   P(same) = 1 − P(A) − P(B)      (Davidson Eq.1)

(ν = 0 is plain logistic). The posterior lives on a fixed grid of directions (`direction_grid`: the quarter circle
for 2 values, a simplex lattice for 3 and more) under a uniform prior. The next pair is the (a, b, prompt) of largest
expected information gain about u (Lindley 1956): H(E_u P(·|u)) − E_u H(P(·|u)). The recommendation: the posterior
mean direction written as a preference p (Σ p = 1), its 90 % highest-posterior region, and the front candidate
maximising p·z (the choice rule of MIP, `pareto.best_for_preference`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

from . import pareto
from .errors import MVAError
from .kinds import SIMPLEX, SearchSpace
from .scorers import ScoreNormaliser

Choice = Literal["A", "B", "same"]
CHOICES: tuple[Choice, ...] = ("A", "B", "same")
BETA = 1.0  # utility scale per z unit: a 1-z better answer is picked ~2/3 of the time (with ν = 0.5)
NU = 0.5  # Davidson's tie propensity: two equal answers are called "about the same" with P = ν/(2 + ν) = 0.2
MAX_PICKS = 10  # the panel recommends after at most this many picks
CREDIBLE = 0.9  # mass of the credible region


class ElicitError(MVAError, ValueError):
    """Elicitation input of the wrong shape, an unknown choice, or too few candidates to compare."""


def direction_grid(n_values: int, resolution: int | None = None) -> np.ndarray:
    """(G, V) unit directions u ≥ 0, ‖u‖₂ = 1, the support of the posterior: for 2 values every 0.5° of the
    quarter circle (181 points, uniform in angle); for V ≥ 3 the simplex lattice with `resolution` steps per edge
    (default 40 for 3 values, 10 beyond), normalised to unit length."""
    if n_values < 2:
        raise ElicitError(f"{n_values} value(s): weight directions need at least 2 values")
    if n_values == 2:
        theta = np.deg2rad(np.linspace(0.0, 90.0, 181 if resolution is None else resolution + 1))
        return np.stack([np.cos(theta), np.sin(theta)], axis=1)
    k = resolution or (40 if n_values == 3 else 10)
    P = SearchSpace(n_values=n_values, C=1.0, step=1.0 / k, kind=SIMPLEX).grid()
    return P / np.linalg.norm(P, axis=1, keepdims=True)


def angle_deg(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle in degrees between directions `u` (..., V) and `v` (..., V)."""
    u, v = np.asarray(u, dtype=float), np.asarray(v, dtype=float)
    cos = (u * v).sum(-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))
    return np.rad2deg(np.arccos(np.clip(cos, -1.0, 1.0)))


def _choice_parts(d: np.ndarray, nu: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(A), P(B), P(same) as three arrays shaped like `d` (the numerators e^{d/2}, e^{−d/2}, ν over their sum,
    each divided by e^{|d|/2} first, so nothing overflows)."""
    h = np.asarray(d, dtype=float) / 2
    m = np.abs(h)
    ea, eb, et = np.exp(h - m), np.exp(-h - m), nu * np.exp(-m)
    total = ea + eb + et
    return ea / total, eb / total, et / total


def choice_probabilities(d: np.ndarray, nu: float = NU) -> np.ndarray:
    """(..., 3) P(A), P(B), P(same) for utility differences d = β u·(z_a − z_b) (Davidson Eq.1, module docstring)."""
    return np.stack(_choice_parts(d, nu), axis=-1)


@dataclass
class Pick:
    """One answered question: candidates `a` and `b` (row indices of the pool) on prompt `prompt`, and the choice."""

    a: int
    b: int
    prompt: int
    choice: Choice


@dataclass
class Elicitation:
    """The pool of candidates the questions come from, their per-prompt z-scores, and the answers so far."""

    scores: np.ndarray  # (K, P, V) z-score of candidate k's response to prompt j on value v
    beta: float = BETA
    nu: float = NU
    picks: list[Pick] = field(default_factory=list)
    grid: np.ndarray | None = None  # (G, V) directions; default `direction_grid(V)`

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=float)
        if self.scores.ndim != 3 or self.scores.shape[0] < 2:
            raise ElicitError(f"scores have shape {self.scores.shape}; need (candidates >= 2, prompts, values)")
        if self.grid is None:
            self.grid = direction_grid(self.scores.shape[2])

    # ---- Posterior ----
    def log_posterior(self) -> np.ndarray:
        """(G,) log posterior over the grid (uniform prior), normalised."""
        logp = np.zeros(len(self.grid))
        for pk in self.picks:
            if pk.choice not in CHOICES:
                raise ElicitError(f"choice {pk.choice!r}; answer one of {CHOICES}")
            diff = self.scores[pk.a, pk.prompt] - self.scores[pk.b, pk.prompt]  # (V,)
            if not np.isfinite(diff).all():
                continue  # a response without a finite score says nothing
            logp += np.log(choice_probabilities(self.beta * self.grid @ diff, self.nu)[:, CHOICES.index(pk.choice)])
        logp -= logp.max()
        return logp - np.log(np.exp(logp).sum())

    def posterior(self) -> np.ndarray:
        return np.exp(self.log_posterior())

    def mean_direction(self) -> np.ndarray:
        """(V,) the posterior mean of u, renormalised to unit length."""
        m = self.posterior() @ self.grid
        return m / np.linalg.norm(m)

    def preference(self) -> np.ndarray:
        """(V,) the recommended weights: the posterior mean direction as a preference p, Σ p = 1."""
        u = self.mean_direction()
        return u / u.sum()

    def credible_region(self, mass: float = CREDIBLE) -> np.ndarray:
        """(G',) grid indices of the highest-posterior directions holding at least `mass` of the posterior."""
        w = self.posterior()
        order = np.argsort(-w, kind="stable")
        n = int(np.searchsorted(np.cumsum(w[order]), mass - 1e-12) + 1)
        return np.sort(order[:n])

    # ---- The next question ----
    def information_gain(self, a: np.ndarray, b: np.ndarray, prompts: np.ndarray) -> np.ndarray:
        """(Q,) expected information gain about u of asking (a[q], b[q], prompts[q]) (Lindley 1956)."""
        w = self.posterior()  # (G,)
        diff = self.scores[a, prompts] - self.scores[b, prompts]  # (Q, V)
        parts = _choice_parts(self.beta * np.nan_to_num(diff) @ self.grid.T, self.nu)  # 3 × (Q, G)

        def plogp(p: np.ndarray) -> np.ndarray:
            return p * np.log(np.maximum(p, 1e-300))

        marginal = [p @ w for p in parts]  # 3 × (Q,) the answer's predictive probabilities
        gain = -sum(plogp(m) for m in marginal) + sum(plogp(p) for p in parts) @ w  # H(E P) − E H(P)
        return np.where(np.isfinite(diff).all(axis=1), gain, -np.inf)

    def next_pair(self, rng: np.random.Generator | None = None, informative: bool = True,
                  max_questions: int = 4000) -> tuple[int, int, int]:
        """(a, b, prompt) to ask next: of largest expected information gain among (up to `max_questions` random)
        pairs of different candidates on prompts not asked yet; `informative=False`: a random one."""
        rng = rng or np.random.default_rng(len(self.picks))
        K, P, _ = self.scores.shape
        asked = {(min(p.a, p.b), max(p.a, p.b), p.prompt) for p in self.picks}
        n_all = K * (K - 1) // 2 * P
        if n_all <= max_questions:
            ia, ib = np.triu_indices(K, 1)
            a, b = np.repeat(ia, P), np.repeat(ib, P)
            prompts = np.tile(np.arange(P), len(ia))
        else:
            a, b = rng.integers(0, K, max_questions), rng.integers(0, K, max_questions)
            a, b = np.minimum(a, b), np.maximum(a, b)
            prompts = rng.integers(0, P, max_questions)
        fresh = np.array([x != y and (x, y, j) not in asked for x, y, j in zip(a, b, prompts)], dtype=bool)
        a, b, prompts = a[fresh], b[fresh], prompts[fresh]
        if not len(a):
            raise ElicitError("every pair of these candidates has been asked on every prompt")
        if not informative:
            q = int(rng.integers(len(a)))
        else:
            gain = self.information_gain(a, b, prompts)
            q = int(np.argmax(gain))
        return int(a[q]), int(b[q]), int(prompts[q])

    def answer(self, a: int, b: int, prompt: int, choice: Choice) -> None:
        if choice not in CHOICES:
            raise ElicitError(f"choice {choice!r}; answer one of {CHOICES}")
        self.picks.append(Pick(int(a), int(b), int(prompt), choice))


@dataclass
class Recommendation:
    preference: np.ndarray  # (V,) Σ = 1
    region: np.ndarray  # (G', V) the credible directions, each as a preference (Σ = 1)
    candidate: int | None  # row of the front matrix maximising p·z
    region_candidates: list[int]  # rows any direction of the credible region would choose
    spread_deg: float  # the largest angle between the recommendation and a credible direction


def recommend(elicitation: Elicitation, front_z: np.ndarray, mass: float = CREDIBLE) -> Recommendation:
    """The recommended weights (posterior mean as p), the credible region of directions, and the candidates of
    `front_z` (N, V; mean z-scores) those choose by the rule p·z (`pareto.best_for_preference`)."""
    p = elicitation.preference()
    region = elicitation.grid[elicitation.credible_region(mass)]
    F = np.asarray(front_z, dtype=float)
    finite = pareto.finite_rows(F) if F.size else np.zeros(0, dtype=bool)
    cand, chosen = None, []
    if finite.any():
        cand = int(pareto.best_for_preference(F, p))
        chosen = sorted({int(pareto.best_for_preference(F, u / u.sum())) for u in region})
    return Recommendation(p, region / region.sum(axis=1, keepdims=True), cand, chosen,
                          float(angle_deg(region, p).max()) if len(region) else 0.0)


def simulate_pick(rng: np.random.Generator, true_u: np.ndarray, diff: np.ndarray, beta: float = BETA,
                  nu: float = NU, noiseless: bool = False) -> Choice:
    """A simulated user's answer for z_a − z_b = `diff`: drawn from the model (`choice_probabilities`), or the
    better answer by the true utility when `noiseless` ("same" only on an exact tie)."""
    d = beta * float(np.asarray(true_u) @ np.asarray(diff))
    if noiseless:
        return "A" if d > 0 else "B" if d < 0 else "same"
    return CHOICES[int(rng.choice(3, p=choice_probabilities(d, nu)))]


def per_prompt_z(rewards: np.ndarray, base: np.ndarray) -> np.ndarray:
    """(K, P, V) each response's reward z-scored against the base model's rewards on the prompts (population mean
    and std per value over the base's finite rewards, a zero std counting as 1: `scorers.ScoreNormaliser`)."""
    norm = ScoreNormaliser().fit(np.asarray(base, dtype=float))
    R = np.asarray(rewards, dtype=float)
    return norm.transform(R.reshape(-1, R.shape[-1])).reshape(R.shape)


def session(scores: np.ndarray, picks: Sequence[tuple[int, int, int, str]], beta: float = BETA,
            nu: float = NU) -> Elicitation:
    """An Elicitation over `scores` with the answered `picks` (a, b, prompt, choice), e.g. from a page's state."""
    e = Elicitation(scores, beta, nu)
    for a, b, j, c in picks:
        e.answer(a, b, j, c)  # type: ignore[arg-type]
    return e
