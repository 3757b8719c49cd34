"""The simulated shoppers of ``python -m bench shop-sim``: hidden product appeal, true preferences, and a
position-based click model with add-to-cart and purchase.  Pure numpy; no engine, no I/O.

* **Latent quality** ``z_p ~ N(0, 1)`` per product, drawn from ``(seed, product id)``: how good the product
  is, whatever the query.  The engine never sees it.  Its **appeal tier** ``a_p`` is ``+1`` for the top
  quarter (``z_p >= 0.674``), ``-1`` for the bottom quarter (``z_p <= -0.674``), else 0.
* **Popularity** (a catalog attribute, a JSON number, so the fusion's words never match it):
  ``round(max(0, 50 + 15 (z_p + s e_p)), 1)`` with fresh noise ``e_p ~ N(0, 1)`` and ``s`` =
  ``popularity_noise`` (0.5: correlation ``1/sqrt(1 + s^2)`` = 0.89 with ``z_p``): a shop's noisy sales rank.
* **True preference** of a shopper for product ``p`` under query ``q``:
  ``g(q, p) = 0 if r(q, p) == 0 else clip(r(q, p) + a_p, 0, 4)``, where ``r`` (0..3) is the demo generator's
  own ground truth for the query's intent (``vitrina.demo.catalog._grade``: the kind of product first, then
  colour > pattern > material > brand; a model number 3 for that product).  So a good product of the right
  kind and colour is worth as much as an average exact match; a poor one of the right kind is worth nothing.
* **Clicks** (position-based model, Craswell et al. 2008): position ``k`` of the 10 shown is examined with
  ``theta_k = 1 / k^eta``; an examined product is clicked with its attraction
  ``alpha(g) = eps + (1 - 2 eps) (2^g - 1) / (2^4 - 1)`` (``eps`` = 0.02: 0.02, 0.084, 0.212, 0.468, 0.98
  for g = 0..4; the ERR mapping of grades to satisfaction).  Every position is independent (several clicks
  per page happen).  After a click the product goes to the cart with ``cart[g]`` and is bought from the
  cart with ``purchase[g]``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_GRADE = 4
#: z quartiles: the top and bottom quarter of products are the appealing and the unappealing ones.
TIER_Z = 0.6745


@dataclass(frozen=True, kw_only=True)
class Shoppers:
    """How simulated shoppers look at a page of results and what they do (see the module docstring)."""

    eta: float = 1.0
    positions: int = 10
    noise_click: float = 0.02
    cart: tuple[float, ...] = (0.01, 0.10, 0.25, 0.45, 0.65)
    purchase: tuple[float, ...] = (0.0, 0.20, 0.35, 0.50, 0.70)

    def theta(self) -> np.ndarray:
        """True examination probability of positions 1..``positions``."""
        return 1.0 / np.arange(1, self.positions + 1, dtype=np.float64) ** self.eta

    def attraction(self, grades: np.ndarray | Sequence[int]) -> np.ndarray:
        g = np.clip(np.asarray(grades, dtype=np.float64), 0, MAX_GRADE)
        return self.noise_click + (1.0 - 2.0 * self.noise_click) * (2.0 ** g - 1.0) / (2.0 ** MAX_GRADE - 1.0)

    def browse(self, grades: Sequence[int], rng: np.random.Generator) -> list[tuple[int, str]]:
        """Events of one shopper on one page: ``(1-based position, kind)``, kind click / add_to_cart /
        purchase, in the order they happen (a cart or purchase follows its click)."""
        g = np.asarray(grades, dtype=np.int64)[: self.positions]
        n = len(g)
        examined = rng.random(n) < self.theta()[:n]
        clicked = examined & (rng.random(n) < self.attraction(g))
        carted = clicked & (rng.random(n) < np.asarray(self.cart)[g])
        bought = carted & (rng.random(n) < np.asarray(self.purchase)[g])
        events: list[tuple[int, str]] = []
        for i in np.flatnonzero(clicked):
            events.append((int(i) + 1, "click"))
            if carted[i]:
                events.append((int(i) + 1, "add_to_cart"))
                if bought[i]:
                    events.append((int(i) + 1, "purchase"))
        return events


def _normal(key: str) -> float:
    """A standard normal drawn from a string key (stable across runs, platforms and catalog sizes)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return float(np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal())


def latent_quality(seed: int, product_ids: Sequence[str]) -> np.ndarray:
    return np.array([_normal(f"shop-sim/{seed}/quality/{pid}") for pid in product_ids])


def appeal_tiers(quality: np.ndarray) -> np.ndarray:
    return np.where(quality >= TIER_Z, 1, np.where(quality <= -TIER_Z, -1, 0)).astype(np.int64)


def popularity(seed: int, product_ids: Sequence[str], quality: np.ndarray, noise: float) -> np.ndarray:
    """The catalog's observed popularity: the latent quality seen through noise, on a 0-100-ish scale."""
    eps = np.array([_normal(f"shop-sim/{seed}/popularity/{pid}") for pid in product_ids])
    return np.round(np.maximum(0.0, 50.0 + 15.0 * (quality + noise * eps)), 1)


def true_grades(relevance: np.ndarray, tiers: np.ndarray) -> np.ndarray:
    """``g = 0 if r == 0 else clip(r + a, 0, 4)`` per product."""
    r = np.asarray(relevance, dtype=np.int64)
    return np.where(r > 0, np.clip(r + tiers, 0, MAX_GRADE), 0).astype(np.int64)
