"""A product's behaviour prior learnt from the shop's log (pure; numpy only).

Judgments from the log (``search.behaviour.judgments_from_log``) carry, per (query, product), the searches in
which the shopper acted on the product (``acted``) and the examination it got there (``examined``: the click
model's summed θ).  Pooled over every query, they say how attractive the product is *whatever* the query -- a
standard behavioural feature of learning to rank, and one a shop has for products no judged query asked about:

    prior = log((A_p + m·μ) / (E_p + m)) − log μ

``A_p`` and ``E_p`` sum the product's evidence over the queries, ``μ = ΣA / ΣE`` is the mean rate and ``m``
(``STRENGTH``, in examinations) pulls a rarely seen product toward it: 0 is "as attractive as the average
shown product", a product never shown gets 0.  For training, a query's own evidence is taken out of its
products' priors (:func:`out_of_fold`): its label must not leak into its features.  The trained re-ranker
stores the priors of every product the log saw (:func:`prior_values`) and looks them up by product id.
"""

from __future__ import annotations

import math
from collections import ChainMap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

#: The ``attributes`` entry that turns the behaviour prior on (one feature column of that name).
BEHAVIOUR_FEATURE = "behaviour:rate"
#: Pseudo-examinations at the mean rate added to every product's evidence.
STRENGTH = 5.0

Evidence = Mapping[str, tuple[float, float]]


def pool_evidence(evidence: Iterable[Evidence]) -> dict[str, tuple[float, float]]:
    """Per product: (acted, examined) summed over the queries' evidence maps."""
    totals: dict[str, tuple[float, float]] = {}
    for found in evidence:
        for pid, (acted, examined) in found.items():
            a, e = totals.get(pid, (0.0, 0.0))
            totals[pid] = (a + float(acted), e + float(examined))
    return totals


def mean_rate(totals: Evidence) -> float:
    """``ΣA / ΣE``; 0 when nothing was acted on or examined."""
    acted = sum(a for a, _ in totals.values())
    examined = sum(e for _, e in totals.values())
    return acted / examined if acted > 0 and examined > 0 else 0.0


def prior_value(acted: float, examined: float, *, mean: float, strength: float = STRENGTH) -> float:
    """One product's prior (see the module docstring); 0 when the mean rate is 0."""
    if mean <= 0:
        return 0.0
    smoothed = (max(acted, 0.0) + strength * mean) / (max(examined, 0.0) + strength)
    return math.log(max(smoothed, 1e-12) / mean)


def prior_values(totals: Evidence, *, mean: float, strength: float = STRENGTH) -> dict[str, float]:
    """Every product's prior."""
    return {pid: prior_value(a, e, mean=mean, strength=strength) for pid, (a, e) in totals.items()}


def out_of_fold(totals: Evidence, own: Evidence, priors: Mapping[str, float], *, mean: float,
                strength: float = STRENGTH) -> Mapping[str, float]:
    """``priors`` with the products of ``own`` (one query's evidence) re-computed without it (a view; ``priors``
    is not copied)."""
    mine: dict[str, float] = {}
    for pid, (acted, examined) in own.items():
        a, e = totals.get(pid, (0.0, 0.0))
        mine[pid] = prior_value(a - float(acted), e - float(examined), mean=mean, strength=strength)
    return ChainMap(mine, dict(priors) if not isinstance(priors, dict) else priors)


class _HasEvidence(Protocol):
    @property
    def evidence(self) -> Evidence: ...


@dataclass(frozen=True, kw_only=True)
class BehaviourPrior:
    """The pooled evidence of judged queries and the priors it gives (see the module docstring)."""

    totals: dict[str, tuple[float, float]]
    mean: float
    priors: dict[str, float]
    strength: float = STRENGTH

    @classmethod
    def learn(cls, queries: Iterable[_HasEvidence], *, strength: float = STRENGTH) -> BehaviourPrior | None:
        """The prior of queries' evidence; None when they carry none (or nothing was acted on)."""
        totals = pool_evidence(q.evidence for q in queries)
        mean = mean_rate(totals)
        if not totals or mean <= 0:
            return None
        return cls(totals=totals, mean=mean, priors=prior_values(totals, mean=mean, strength=strength), strength=strength)

    def without(self, query: _HasEvidence) -> Mapping[str, float]:
        """The priors with ``query``'s own evidence taken out (for its training features)."""
        return out_of_fold(self.totals, query.evidence, self.priors, mean=self.mean, strength=self.strength)

    def to_json(self) -> dict[str, Any]:
        """What the stored classifier keeps: the priors by product id (and how they were made)."""
        return {"feature": BEHAVIOUR_FEATURE, "strength": self.strength, "mean_rate": round(self.mean, 6),
                "products": {pid: round(v, 4) for pid, v in sorted(self.priors.items())}}
