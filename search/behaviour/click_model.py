"""A position-based click model (PBM) fitted by EM, and inverse-propensity weights from it.  Pure numpy.

The model (Craswell et al. 2008; Chuklin, Markov & de Rijke, *Click Models for Web Search*, 2015): a shopper
examines position ``k`` with probability ``θ_k`` whatever is shown there, and clicks an examined product
``d`` for query ``q`` with probability ``γ_{q,d}`` (its attractiveness), independently::

    P(click | q, d, k) = θ_k · γ_{q,d}

Examination and attractiveness are hidden; EM estimates both from impressions ``(pair, position, clicked)``
(``pair`` numbers the distinct (query, product) pairs).  For a non-click the E-step splits the blame::

    P(E=1 | C=0) = θ_k (1 - γ) / (1 - θ_k γ)        P(R=1 | C=0) = (1 - θ_k) γ / (1 - θ_k γ)

(a click means examined and attractive), and the M-step sets each ``θ_k`` to the mean of ``P(E=1 | ·)`` over
the impressions at ``k`` and each ``γ`` to the mean of ``P(R=1 | ·)`` over the pair's impressions (this is the
PBM EM of Chuklin et al.; Wang et al. 2018, "Position bias estimation for unbiased learning to rank in
personal search", replace the per-pair ``γ`` with a regression on features: not done here, there are no
features of the pair at this stage).  ``θ·γ`` only fixes the product, so ``θ`` is reported relative to
position 1 (``θ_1 = 1``, ``γ`` scaled to match).

**Identifiability.**  ``θ_k / θ_1`` is learnt only from products seen both at 1 (or at positions linked to it)
and at ``k``: if every query always showed the same products in the same order, position and product could not
be told apart.  A live log provides the variation — the catalog changes, the index is rebuilt, the ranker is
retrained, filters and pages shift products — and the more of it, the better ``θ`` is pinned down.

Inverse propensity scoring (Joachims, Swaminathan & Schnabel 2017, "Unbiased learning-to-rank with biased
feedback"): a click at position ``k`` counts ``1 / θ_k`` times, which undoes the examination bias in
expectation; the weight is clipped (``max_weight``, 10 by default) so that a few clicks at rarely examined
positions cannot dominate (a little bias for much less variance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

_EPS = 1e-6


@dataclass(frozen=True, kw_only=True)
class ClickModel:
    """A fitted PBM: examination per position and attractiveness per (query, product) pair."""

    #: ``theta[k - 1]``: examination probability of position ``k`` relative to position 1 (``theta[0] == 1``).
    theta: np.ndarray
    #: ``gamma[j]``: attractiveness of pair ``j`` (on the scale where ``theta[0] == 1``).
    gamma: np.ndarray
    iterations: int
    converged: bool
    #: Mean log-likelihood of the impressions per impression, at the end.
    log_likelihood: float

    def click_probability(self, pairs: ArrayLike, positions: ArrayLike) -> np.ndarray:
        """``θ_k · γ_{pair}`` for each impression."""
        probability: np.ndarray = propensities(self.theta, positions) * self.gamma[np.asarray(pairs, dtype=np.int64)]
        return probability


def fit_pbm(pairs: ArrayLike, positions: ArrayLike, clicks: ArrayLike, *, n_positions: int | None = None,
            max_iter: int = 2000, tol: float = 1e-6) -> ClickModel:
    """EM estimate of a position-based click model from impressions.

    ``pairs``: the (query, product) pair of each impression as an integer ``0..J-1``; ``positions``: the 1-based
    position it was shown at; ``clicks``: whether it was clicked.  ``n_positions``: how many positions to model
    (default: the deepest seen); deeper impressions share the last position's ``θ``.  Stops when no parameter
    moves more than ``tol`` in an iteration, or after ``max_iter``.  Without any click there is nothing to learn
    and ``θ`` is all ones (no correction)."""
    pair = np.asarray(pairs, dtype=np.int64).reshape(-1)
    pos = np.asarray(positions, dtype=np.int64).reshape(-1)
    click = np.asarray(clicks).reshape(-1).astype(bool)
    if not (pair.size == pos.size == click.size):
        raise ValueError(f"pairs, positions and clicks differ in length: {pair.size}, {pos.size}, {click.size}")
    if pos.size and pos.min() < 1:
        raise ValueError("positions are 1-based")
    if pair.size and pair.min() < 0:
        raise ValueError("pairs are non-negative integers")
    n_pos = int(n_positions if n_positions is not None else (pos.max() if pos.size else 1))
    if n_pos < 1:
        raise ValueError(f"n_positions must be positive, got {n_positions}")
    slot = np.minimum(pos, n_pos) - 1
    n_pairs = int(pair.max()) + 1 if pair.size else 0
    if not click.any():
        return ClickModel(theta=np.ones(n_pos), gamma=np.zeros(n_pairs), iterations=0, converged=True,
                          log_likelihood=0.0)
    # impressions folded into (pair, position) cells: shown n times, clicked c times
    cell, where = np.unique(pair * n_pos + slot, return_inverse=True)
    shown = np.bincount(where).astype(np.float64)
    clicked = np.bincount(where, click).astype(np.float64)
    c_pair, c_slot = cell // n_pos, cell % n_pos
    at_position = np.bincount(c_slot, shown, minlength=n_pos)
    of_pair = np.bincount(c_pair, shown, minlength=n_pairs)
    # start from the click rate per position (relative to the first's) and per pair
    rate = _safe_div(np.bincount(c_slot, clicked, minlength=n_pos), at_position)
    theta = np.clip(_safe_div(rate, np.full(n_pos, rate[0] or rate.max())), _EPS, 1.0)
    gamma = np.clip(_safe_div(np.bincount(c_pair, clicked, minlength=n_pairs), of_pair), _EPS, 1 - _EPS)
    converged, iteration = False, 0
    for iteration in range(1, max_iter + 1):
        t, g = theta[c_slot], gamma[c_pair]
        missed = shown - clicked
        rest = np.maximum(1.0 - t * g, _EPS)
        examined = clicked + missed * t * (1.0 - g) / rest
        attractive = clicked + missed * (1.0 - t) * g / rest
        new_theta = np.clip(_safe_div(np.bincount(c_slot, examined, minlength=n_pos), at_position, fill=1.0), _EPS, 1.0)
        new_gamma = _safe_div(np.bincount(c_pair, attractive, minlength=n_pairs), of_pair)
        # θ·γ is fixed only as a product: hold θ_1 = 1 (position 1 is always examined) after every step
        first = new_theta[0]
        new_theta, new_gamma = new_theta / first, np.clip(new_gamma * first, _EPS, 1 - _EPS)
        new_theta = np.clip(new_theta, _EPS, 1.0)
        moved = max(float(np.abs(new_theta - theta).max()), float(np.abs(new_gamma - gamma).max(initial=0.0)))
        theta, gamma = new_theta, new_gamma
        if moved < tol:
            converged = True
            break
    p = np.clip(theta[c_slot] * gamma[c_pair], _EPS, 1 - _EPS)
    log_likelihood = float((clicked * np.log(p) + (shown - clicked) * np.log1p(-p)).sum() / shown.sum())
    return ClickModel(theta=theta, gamma=gamma, iterations=iteration, converged=converged, log_likelihood=log_likelihood)


def propensities(theta: ArrayLike, positions: ArrayLike) -> np.ndarray:
    """The examination probability ``θ_k`` of each 1-based position (past the last modelled position: the last's)."""
    th = np.asarray(theta, dtype=np.float64).reshape(-1)
    if th.size == 0:
        raise ValueError("theta is empty")
    pos = np.asarray(positions, dtype=np.int64)
    if pos.size and pos.min() < 1:
        raise ValueError("positions are 1-based")
    found: np.ndarray = th[np.minimum(pos, th.size) - 1]
    return found


def ips_weights(theta: ArrayLike, positions: ArrayLike, *, max_weight: float = 10.0) -> np.ndarray:
    """Inverse-propensity weights ``1 / θ_k`` of clicks at ``positions``, clipped at ``max_weight``."""
    if not max_weight >= 1.0:
        raise ValueError(f"max_weight must be at least 1, got {max_weight}")
    prop = propensities(theta, positions)
    with np.errstate(divide="ignore"):
        weights: np.ndarray = np.minimum(np.where(prop > 0, 1.0 / np.maximum(prop, 1e-300), np.inf), max_weight)
    return weights


def _safe_div(num: np.ndarray, den: np.ndarray, *, fill: float = 0.0) -> np.ndarray:
    out: np.ndarray = np.divide(num, den, out=np.full(num.shape, fill, dtype=np.float64), where=den > 0)
    return out
