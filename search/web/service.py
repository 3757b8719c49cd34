"""What the HTTP API does, apart from HTTP: the server's settings (``WebConfig``) and the service that turns
requests into pages of hits, products, images and stats over one ``SearchEngine``."""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from sqlalchemy import func, select

from indexer.config import ImageLimits
from indexer.errors import QueryError
from indexer.media.images import decode_image
from indexer.store.schema import ImageRow, Product

from search.facets import count_facets
from search.web.events import PHOTO_DIGEST, SearchRecorder, photo_digest
from search.web.models import PageIn, SearchIn, UploadIn, parse_refine


_T = TypeVar("_T")


@dataclass(frozen=True, kw_only=True)
class WebConfig:
    """Limits and defaults of the HTTP layer (the engine keeps its own ``SearchConfig``)."""

    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    allowed_formats: frozenset[str] = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP"})
    max_k: int = 100
    #: Facets count this many top results of the query.
    facet_depth: int = 200
    #: Fixed price bucket edges; ``None``: round edges spanning the prices of the top results.
    price_edges: tuple[float, ...] | None = None
    negative_weight: float = 0.5
    #: Photo weight of ``/search/image`` when not given (the text gets 1 minus it).
    image_weight: float = 0.7
    #: Searches at once (the thread pool that decodes, encodes and searches).
    search_threads: int = 4
    max_terms: int = 16
    #: Photos decoded at once: a 6000x6000 PNG takes ~100 MB while it decodes, so uploads queue here.
    decode_threads: int = 2

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_k", "facet_depth", "search_threads", "max_terms", "decode_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"WebConfig.{name} must be at least 1")
        if not 0 <= self.image_weight <= 1 or self.negative_weight < 0:
            raise ValueError("WebConfig.image_weight must be within [0, 1] and negative_weight non-negative")

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_pixels=self.max_pixels, max_bytes=self.max_upload_bytes, allowed_formats=self.allowed_formats)


class ImageRoots:
    """The outermost folders the index's images live in (symlinks resolved); nothing outside is served."""

    def __init__(self, locations: Iterable[str]):
        parents = {os.path.dirname(loc) for loc in locations if not _is_url(loc)}
        roots: list[Path] = []
        for folder in sorted({Path(p).resolve() for p in parents}, key=lambda p: len(p.parts)):
            if not any(folder.is_relative_to(r) for r in roots):
                roots.append(folder)
        self.roots = tuple(roots)

    def file(self, location: str) -> Path | None:
        path = Path(location).resolve()
        return path if path.is_file() and any(path.is_relative_to(r) for r in self.roots) else None


class Service:
    """What the routes do, as blocking methods over the shared engine (run in ``pool``)."""

    def __init__(self, engine: Any, config: WebConfig):
        self.engine, self.config = engine, config
        with engine.store.engine.connect() as conn:
            self.roots = ImageRoots(conn.execute(select(ImageRow.location)).scalars())
        extra = [f for f in engine.info()["filter_fields"] if f not in ("id", "category", "brand", "price")]
        self.facet_fields = ["category", "brand", "price", *extra]
        self.pool = ThreadPoolExecutor(max_workers=config.search_threads, thread_name_prefix="vitrina-web")
        # /healthz answers from its own thread: a queue of slow searches must not make the server look dead
        self.health_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vitrina-health")
        self.decodes = threading.BoundedSemaphore(config.decode_threads)
        self.min_size: int | None = getattr(engine.encoder, "image_size", None)
        engine_max_k = getattr(getattr(engine, "config", None), "max_k", None)
        #: The deepest hit a page may reach (the engine's offset + k limit).
        self.window = 10 * engine_max_k if isinstance(engine_max_k, int) else 10_000
        #: Records each page shown when the server logs searches (``--log``); its answer carries ``query_id``.
        self.log: SearchRecorder | None = None

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.wrap_future(self.pool.submit(fn, *args))

    async def health(self) -> dict[str, int]:
        return await asyncio.wrap_future(self.health_pool.submit(self.engine.store.counts))

    def search(self, body: SearchIn, prefix: str) -> dict[str, Any]:
        if len(body.terms) > self.config.max_terms:
            raise QueryError(f"at most {self.config.max_terms} terms")
        terms = self._text_terms(body.text, body.weights.text)
        if body.image is not None:
            terms.append(("image", self._decode(_b64(body.image, "image"), "image"), body.weights.image))
        if body.vector is not None:
            terms.append(("vector", body.vector, body.weights.vector))
        for i, t in enumerate(body.terms):
            if t.image is not None:
                terms.append(("image", self._decode(_b64(t.image, f"terms.{i}.image"), f"terms[{i}].image"), t.weight))
            elif t.vector is not None:
                terms.append(("vector", t.vector, t.weight))
            else:
                terms.append(("text", t.text, t.weight) if t.text is not None else ("product", t.product, t.weight))
        values = [({kind: v} if kind in ("product", "vector") else v, w) for kind, v, w in terms]
        return self.page(self.engine.search, body, prefix, terms, terms=values, exclude=body.exclude)

    def search_upload(self, data: bytes, filename: str, form: UploadIn, prefix: str) -> dict[str, Any]:
        weight = self.config.image_weight if form.image_weight is None else form.image_weight
        terms = [*self._text_terms(form.text, 1.0 - weight), ("image", self._decode(data, filename), weight)]
        return self.page(self.engine.search, form, prefix, terms, terms=[(v, w) for _, v, w in terms])

    def similar(self, product_id: str, params: PageIn, prefix: str) -> dict[str, Any]:
        self.product(product_id, prefix)  # 404 when unknown
        return self.page(self.engine.similar, params, prefix, [("product", product_id, 1.0)], product_id)

    def page(self, fn: Callable[..., Any], params: Any, prefix: str, shown: list[tuple[str, Any, float]],
             *args: Any, **fixed: Any) -> dict[str, Any]:
        """One page of hits, with facets counted over the top ``facet_depth`` results."""
        k, offset, depth = params.k, params.offset, self.config.facet_depth
        if k > self.config.max_k:
            raise QueryError(f"k must be at most {self.config.max_k}, got {k}")
        if offset + k > self.window:
            raise QueryError(f"offset + k must be at most {self.window}, got {offset + k}")
        unknown = [f for f in params.facets if f not in self.facet_fields]
        if unknown:
            raise QueryError(f"unknown facet field {unknown[0]!r}; facet fields: {', '.join(self.facet_fields)}")
        rerank = "rerank" in inspect.signature(fn).parameters
        kw = {**fixed, "where": params.where, "image_share": params.image_share}
        if rerank and params.rerank is not None:
            kw["rerank"] = params.rerank
        # business signals (search.business), passed only when asked for: an engine without them still answers
        kw.update({name: getattr(params, name) for name in ("sort", "boost", "in_stock") if getattr(params, name) is not None})
        facets, counted = {}, 0
        if params.facets:
            deep = fn(*args, k=depth, offset=0, **kw)
            counted = len(deep.hits)
            facets = count_facets([h.product for h in deep.hits], params.facets, price_edges=self.config.price_edges)
        if params.facets and offset + k < depth:
            result, hits, has_more = deep, deep.hits[offset:offset + k], len(deep.hits) > offset + k
        elif offset + k < self.window:  # one hit more than the page says whether there is a next one
            result = fn(*args, k=k + 1, offset=offset, **kw)
            hits, has_more = result.hits[:k], len(result.hits) > k
        else:  # the page ends at the deepest hit a query may reach: there is no next page to ask for
            result = fn(*args, k=k, offset=offset, **kw)
            hits, has_more = result.hits, False
        answer = {
            "query": [{"kind": kind, "value": _shown(kind, value), "weight": w} for kind, value, w in shown],
            "hits": [_hit_json(h, rank, prefix) for rank, h in enumerate(hits, start=offset + 1)],
            "k": k, "offset": offset, "has_more": has_more, "facets": facets, "facet_depth": counted,
            "rerank": {"requested": params.rerank, "supported": rerank}, "timings_ms": result.timings,
        }
        if self.log is not None and (query_id := self.log.record(terms=shown, params=params, hits=hits, offset=offset,
                                                                 result=result, rerank_supported=rerank)):
            answer["query_id"] = query_id
        return answer

    def product(self, product_id: str, prefix: str = "", *, public: bool = True) -> dict[str, Any]:
        try:
            stored = self.engine.product(product_id)
        except QueryError:
            raise HTTPException(404, f"no product {product_id!r}") from None
        return _public(stored, prefix) if public else stored

    def image(self, product_id: str, n: int) -> str | Path:
        locations = self.product(product_id, public=False)["images"]
        if not 0 <= n < len(locations):
            raise HTTPException(404, f"product {product_id!r} has no image {n}")
        path = locations[n] if _is_url(locations[n]) else self.roots.file(locations[n])
        if path is None:
            raise HTTPException(404, f"image {n} of product {product_id!r} is not available")
        return path

    def stats(self) -> dict[str, Any]:
        catalog: dict[str, Any] = {}
        with self.engine.store.engine.connect() as conn:
            for column in (Product.category, Product.brand):
                rows = conn.execute(select(column, func.count()).where(column.is_not(None)).group_by(column)
                                    .order_by(func.count().desc(), column).limit(500)).all()
                catalog[column.key] = [{"value": v, "count": c} for v, c in rows]
            low, high = conn.execute(select(func.min(Product.price), func.max(Product.price))).one()
        catalog["price"] = {"min": low, "max": high}
        c = self.config
        limits = {"max_upload_bytes": c.max_upload_bytes, "max_pixels": c.max_pixels, "allowed_formats": sorted(c.allowed_formats),
                  "max_k": c.max_k, "facet_depth": c.facet_depth, "image_weight": c.image_weight}
        info = {k: v for k, v in self.engine.info().items() if k != "folder"}
        return {**info, "facet_fields": self.facet_fields, "catalog": catalog, "limits": limits}

    def _text_terms(self, text: str | None, weight: float) -> list[tuple[str, Any, float]]:
        positive, negatives = parse_refine(text or "")
        if weight == 0:
            return []
        return [("text", positive, weight)] * bool(positive) + [("text", n, -self.config.negative_weight * weight) for n in negatives]

    def _decode(self, data: bytes, name: str) -> Any:
        """Decode at most ``decode_threads`` photos at once, each reduced to what the model needs."""
        with self.decodes:
            image = decode_image(data, name=name, limits=self.config.image_limits, min_size=self.min_size)
        if self.log is not None:  # the search log keeps a photo as the hash of its bytes, never the bytes
            image.info[PHOTO_DIGEST] = photo_digest(data)
        return image


def _shown(kind: str, value: Any) -> Any:
    """A query term as the answer echoes it: a photo as "photo", a vector by its size."""
    return "photo" if kind == "image" else f"{len(value)} dims" if kind == "vector" else value


def _public(product: dict[str, Any], prefix: str) -> dict[str, Any]:
    base = f"{prefix}/products/{quote(product['id'], safe='')}/images/"
    return {**product, "images": [f"{base}{n}" for n in range(len(product["images"]))]}


def _hit_json(hit: Any, rank: int, prefix: str) -> dict[str, Any]:
    product = _public(hit.product, prefix)
    image = product["images"][hit.image_index] if hit.image_index is not None else (product["images"] or [None])[0]
    return {"rank": rank, **hit.to_json(), "image": image, "product": product}


def _b64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text.partition(",")[2] if text.startswith("data:") else text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestValidationError([{"type": "value_error", "loc": ("body", *field.split(".")), "msg": "not valid base64"}]) from None


def _is_url(location: str) -> bool:
    return location.lower().startswith(("http://", "https://"))
