"""Calibrated fusion: every part of the fused score on one scale before one weighted sum.

Pure numpy.  Cosines of different pairs live on different scales (a photo's cosines to catalog photos sit far
above its cosines to product texts: the "modality gap"), so a plain ``a * image + (1 - a) * text`` lets the pair
that spreads most decide.  Here each query term is scored on its own against both sides of every candidate, and
each (term, side) cosine becomes a z-score against the same term's cosines to a *reference sample* of the
index's own products (measured per query, so it holds for any catalog and any model):

    z_side(i, p) = (cos(e_i, side(p)) - mean_r cos(e_i, side(r))) / std_r cos(e_i, side(r))

    image part(p) = sum_i w_i / W * a_i * z_image(i, p)          W = sum_i |w_i|
    text part(p)  = sum_i w_i / W * (1 - a_i) * z_text(i, p)     a_i: the image share of term i
    lexical(p)    = lambda * min(z_bm25(p), cap)                 BM25 as a z-score over the catalog
    field(p)      = beta * sum_f prior_f * evidence_f[value_f(p)] (``search.field_match``)
    fused(p)      = image part + text part + lexical + field

A product without photos takes its text z for the image side too (and the other way round), as
``fusion.fuse`` does for raw cosines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A side whose reference cosines barely spread (a constant model, a one-product index) is not amplified.
MIN_SPREAD = 1e-3


def best_per_owner(sims: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Best of each owner's scores along the last axis: ``(t, m)`` with ``owner`` (m,) -> ``(t, n)``,
    NaN where an owner has no score."""
    sims = np.atleast_2d(np.asarray(sims, np.float32))
    out = np.full((sims.shape[0], n), -np.inf, np.float32)
    if sims.shape[1]:
        np.maximum.at(out, (slice(None), owner), sims)  # type: ignore[arg-type]  # numpy's stubs: no tuple index
    out[np.isneginf(out)] = np.nan
    return out


def side_cosines(terms: np.ndarray, text: np.ndarray, has_text: np.ndarray, images: np.ndarray,
                 image_owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per term and product: (cosine to its text, best cosine over its images), each ``(t, n)``, NaN where
    the product lacks that side.  ``terms`` (t, d) unit vectors; ``text`` (n, d); ``images`` (m, d)."""
    terms = np.atleast_2d(np.asarray(terms, np.float32))
    n = len(text)
    text_cos = (terms @ np.asarray(text, np.float32).T) if n else np.empty((len(terms), 0), np.float32)
    text_cos = np.where(np.asarray(has_text, bool)[None, :], text_cos, np.nan).astype(np.float32)
    image_cos = best_per_owner(terms @ np.asarray(images, np.float32).T, np.asarray(image_owner, np.int64), n) \
        if len(images) else np.full((len(terms), n), np.nan, np.float32)
    return text_cos, image_cos


@dataclass(frozen=True, kw_only=True)
class Moments:
    """Per term and side (``(t,)`` arrays): the mean and spread of its cosines over the reference sample."""

    text_mean: np.ndarray
    text_std: np.ndarray
    image_mean: np.ndarray
    image_std: np.ndarray


def reference_moments(text_cos: np.ndarray, image_cos: np.ndarray) -> Moments:
    """Moments of each term's cosines to the reference products (``(t, r)`` each, NaN ignored)."""

    def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.atleast_2d(x)
        finite = np.isfinite(x)
        count = finite.sum(axis=1)
        safe = np.where(finite, x, 0.0)
        mean = np.divide(safe.sum(axis=1), count, out=np.zeros(len(x)), where=count > 0)
        var = np.divide((np.where(finite, x - mean[:, None], 0.0) ** 2).sum(axis=1), count,
                        out=np.zeros(len(x)), where=count > 0)
        return mean.astype(np.float32), np.maximum(np.sqrt(var), MIN_SPREAD).astype(np.float32)

    text_mean, text_std = moments(text_cos)
    image_mean, image_std = moments(image_cos)
    return Moments(text_mean=text_mean, text_std=text_std, image_mean=image_mean, image_std=image_std)


def standardise(text_cos: np.ndarray, image_cos: np.ndarray, moments: Moments) -> tuple[np.ndarray, np.ndarray]:
    """``(z_text, z_image)``, each ``(t, n)``; a missing side takes the other side's z."""
    z_text = (text_cos - moments.text_mean[:, None]) / moments.text_std[:, None]
    z_image = (image_cos - moments.image_mean[:, None]) / moments.image_std[:, None]
    z_text, z_image = np.where(np.isnan(z_text), z_image, z_text), np.where(np.isnan(z_image), z_text, z_image)
    return z_text.astype(np.float32), z_image.astype(np.float32)


def lexical_z(bm25: np.ndarray, matched: np.ndarray, *, matches: int, products: int, cap: float = 8.0) -> np.ndarray:
    """BM25 on the fused scale: a z-score over the whole catalog, capped at ``cap``; 0 where no word matched.

    ``bm25`` (n,) is each candidate's BM25 (NaN: no match); ``matched`` the query's best BM25 scores (the
    ones the index returned, best first); ``matches`` how many products match at all (at least
    ``len(matched)``: the matches not returned count as the lowest returned score); ``products`` the catalog
    size (the rest score 0).  A word found in few products (an id, a brand, a rare title word) gets a large z,
    a word found everywhere a small one: inverse document frequency on the fused scale.
    """
    bm25 = np.asarray(bm25, np.float32)
    matched = np.asarray(matched, np.float64)
    if not len(matched) or products <= 0:
        return np.zeros(len(bm25), np.float32)
    rest = max(matches - len(matched), 0)
    total = matched.sum() + rest * matched.min()
    squares = (matched**2).sum() + rest * matched.min() ** 2
    n = max(products, matches)
    mean = total / n
    std = max(float(np.sqrt(max(squares / n - mean**2, 0.0))), 1e-6)
    z = np.where(np.isnan(bm25), 0.0, (np.nan_to_num(bm25) - mean) / std)
    return np.minimum(np.maximum(z, 0.0), cap).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class FusedParts:
    """Each part of the fused score as it enters the sum, ``(n,)`` each; ``fused`` is their sum."""

    image: np.ndarray
    text: np.ndarray
    lexical: np.ndarray
    field: np.ndarray

    @property
    def fused(self) -> np.ndarray:
        total: np.ndarray = (self.image + self.text + self.lexical + self.field).astype(np.float32)
        return total


def fuse_parts(z_text: np.ndarray, z_image: np.ndarray, weights: np.ndarray, image_shares: np.ndarray, *,
               lexical: np.ndarray | None = None, lexical_weight: float = 0.0,
               field: np.ndarray | None = None, field_weight: float = 0.0) -> FusedParts:
    """The weighted sum of the calibrated parts (see the module docstring)."""
    weights = np.asarray(weights, np.float32)
    shares = np.asarray(image_shares, np.float32)
    total = float(np.abs(weights).sum()) or 1.0
    image_w = (weights * shares / total)[:, None]
    text_w = (weights * (1.0 - shares) / total)[:, None]
    n = z_text.shape[1]
    zeros = np.zeros(n, np.float32)
    return FusedParts(
        image=(image_w * z_image).sum(axis=0).astype(np.float32),
        text=(text_w * z_text).sum(axis=0).astype(np.float32),
        lexical=(lexical_weight * lexical).astype(np.float32) if lexical is not None and lexical_weight else zeros,
        field=(field_weight * field).astype(np.float32) if field is not None and field_weight else zeros,
    )


@dataclass(frozen=True, kw_only=True)
class Separation:
    """How many standard deviations a product's own photo stands above other products on each side, averaged
    over the reference sample: ``image`` (its other photos), ``text`` (its own text).  0 when unmeasurable."""

    image: float
    text: float


def photo_separation(text: np.ndarray, has_text: np.ndarray, images: np.ndarray, image_owner: np.ndarray) -> Separation:
    """Measure, on reference products (their vectors as ``side_cosines`` takes them), how well a photo of a
    product finds that product through each side: each product's first photo is a query, and its own text
    (and its best *other* photo) is a z-score against the other reference products."""
    owner = np.asarray(image_owner, np.int64)
    images = np.asarray(images, np.float32)
    n = len(text)
    if n < 3 or not len(owner):
        return Separation(image=0.0, text=0.0)
    first = np.full(n, -1, np.int64)
    for row in range(len(owner) - 1, -1, -1):
        first[owner[row]] = row
    queries = np.flatnonzero(first >= 0)
    photos = images[first[queries]]
    text_cos = photos @ np.asarray(text, np.float32).T
    sims = photos @ images.T
    sims[np.arange(len(queries)), first[queries]] = -np.inf  # a photo must not find itself
    image_cos = best_per_owner(sims, owner, n)
    counts = np.bincount(owner, minlength=n)
    has_text = np.asarray(has_text, bool)

    def separation(cos: np.ndarray, valid: np.ndarray) -> float:
        zs = []
        for row, product in enumerate(queries):
            background = np.delete(cos[row], product)
            background = background[np.isfinite(background)]
            if not valid[product] or len(background) < 2 or not np.isfinite(cos[row, product]):
                continue
            zs.append((cos[row, product] - background.mean()) / max(float(background.std()), MIN_SPREAD))
        return max(float(np.mean(zs)), 0.0) if zs else 0.0

    return Separation(image=separation(image_cos, counts >= 2), text=separation(np.where(has_text, text_cos, np.nan), has_text))


#: Separation (in z units) every side is credited with before measuring: a side measured useless on a small
#: or noisy sample (a random model) is discounted, not switched off.
PRIOR_SEPARATION = 1.0


def informed_share(share: float, separation: Separation) -> float:
    """A photo term's image share weighed by how informative each side measured:
    ``a (s_i + 1) / (a (s_i + 1) + (1 - a)(s_t + 1))`` (s in z units, with one unit of prior credit each)."""
    image = share * (separation.image + PRIOR_SEPARATION)
    text = (1.0 - share) * (separation.text + PRIOR_SEPARATION)
    return share if image + text <= 0 else image / (image + text)
