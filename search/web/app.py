"""The HTTP API and the upload-a-photo page over one opened ``SearchEngine`` (FastAPI).

    app = create_app(SearchEngine.open("my-index"), config=WebConfig(max_upload_bytes=5_000_000))

Endpoints (JSON, OpenAPI at ``/docs``): ``POST /search``, ``POST /search/image`` (multipart ``photo``),
``GET /products/{id}``, ``/products/{id}/similar``, ``/products/{id}/images/{n}``, ``/healthz``, ``/stats``,
and the page at ``/``.  Searches answer ``{query, hits, has_more, facets, facet_depth, ...}``; image
fields are URLs of this server (``/products/{id}/images/{n}``), never file paths; a catalog image
that is an http(s) URL redirects there (307).

Refine syntax (the ``text`` of both searches): the words form one text term; a word or quoted phrase
after a minus sign (``-striped``, ``-"v neck"``) is a negative text term of ``negative_weight`` times
the text's weight: ``but in red -striped`` → ``"but in red"`` x1, ``"striped"`` x-0.5.

Errors are ``{"detail": message}``: 404 unknown product or image; 413 upload, body or pixels over a
limit, decompression bombs; 415 not an accepted image format; 400 undecodable image or malformed
multipart; 422 bad parameters, filters or JSON (naming the field; ``errors`` lists each); 503 index
unavailable.  The OpenAPI schema documents each route's statuses with these bodies, and the limits
of this server (k, offset + k, terms) as the fields' maxima.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select

from indexer.config import ImageLimits
from indexer.errors import ImageError, ImageRefusedError, ImageTooLargeError, QueryError, VitrinaError
from indexer.media.images import decode_image
from indexer.store.schema import ImageRow, Product

from search.facets import count_facets
from search.web.docs import install_offline_docs
from search.web.uploads import BodyCap, read_form, megabytes
from search.web.models import ErrorOut, PageIn, SearchIn, UploadIn, ValidationErrorOut, parse_refine


STATIC_DIR = Path(__file__).resolve().parent / "static"
_SLACK = 64 * 1024  # room for multipart boundaries and the small fields beside the photo
_PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data: http: https:; style-src 'self'; script-src 'self'; "
             "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
log = logging.getLogger("vitrina.web")
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


class _ImageRoots:
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


class _Service:
    """What the routes do, as blocking methods over the shared engine (run in ``pool``)."""

    def __init__(self, engine: Any, config: WebConfig):
        self.engine, self.config = engine, config
        with engine.store.engine.connect() as conn:
            self.roots = _ImageRoots(conn.execute(select(ImageRow.location)).scalars())
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
        for i, t in enumerate(body.terms):
            if t.image is not None:
                terms.append(("image", self._decode(_b64(t.image, f"terms.{i}.image"), f"terms[{i}].image"), t.weight))
            else:
                terms.append(("text", t.text, t.weight) if t.text is not None else ("product", t.product, t.weight))
        values = [({"product": v} if kind == "product" else v, w) for kind, v, w in terms]
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
        return {
            "query": [{"kind": kind, "value": value if kind != "image" else "photo", "weight": w} for kind, value, w in shown],
            "hits": [_hit_json(h, rank, prefix) for rank, h in enumerate(hits, start=offset + 1)],
            "k": k, "offset": offset, "has_more": has_more, "facets": facets, "facet_depth": counted,
            "rerank": {"requested": params.rerank, "supported": rerank}, "timings_ms": result.timings,
        }

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
            return decode_image(data, name=name, limits=self.config.image_limits, min_size=self.min_size)


def create_app(engine: Any, *, config: WebConfig = WebConfig()) -> FastAPI:
    """The API and the page over an opened ``SearchEngine``; the caller opens and closes it."""
    service = _Service(engine, config)
    app = FastAPI(title="vitrina", version="0.1.0", summary="Product search by words, by photo, or both",
                  description="\n\n".join((__doc__ or "").split("\n\n")[2:]), default_response_class=SafeJSONResponse)
    app.state.service = service
    json_cap = 4 * -(-config.max_upload_bytes // 3) + _SLACK  # one photo in base64 and the rest
    app.add_middleware(BodyCap, default=(json_cap, f"request body over the {json_cap}-byte limit"), per_path={
        "/search/image": (config.max_upload_bytes + _SLACK, f"the photo is over the {megabytes(config.max_upload_bytes)} upload limit")})
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(VitrinaError, _domain_error)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_offline_docs(app)  # /docs and /redoc from installed assets, no CDN (search.web.docs)

    def prefix(request: Request) -> str:
        return cast(str, request.scope.get("root_path", "")).rstrip("/")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": _PAGE_CSP, "Cache-Control": "no-cache"})

    @app.post("/search", summary="Search by text (refine syntax), images and weighted terms",
              responses=_errors(400, 413, 415, 422, 503))
    async def search(body: SearchIn, request: Request) -> dict[str, Any]:
        return await service.run(service.search, body, prefix(request))

    schema = UploadIn.model_json_schema()
    schema.update(properties={"photo": {"type": "string", "format": "binary"}, **schema["properties"]}, required=["photo"])

    @app.post("/search/image", summary="Upload a photo (multipart field 'photo'), optionally refined with text",
              openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}},
              responses=_errors(400, 413, 415, 422, 503))
    async def search_image(request: Request) -> dict[str, Any]:
        fields, (filename, data) = await read_form(request, max_file=config.max_upload_bytes)
        form = _validated(UploadIn, fields, "form")
        return await service.run(service.search_upload, data, filename, form, prefix(request))

    @app.get("/products/{product_id:path}/similar", summary="More like this product (never the product itself)",
             responses=_errors(404, 422, 503))
    async def similar(request: Request, product_id: str, k: int = 10, offset: int = 0, image_share: float | None = None,
                      where: str | None = Query(None, description="Filters as JSON"),
                      facets: str = Query("", description="Comma-separated facet fields"), rerank: bool | None = None) -> dict[str, Any]:
        query = {"k": k, "offset": offset, "where": where, "image_share": image_share, "facets": facets, "rerank": rerank}
        params = _validated(PageIn, query, "query")
        return await service.run(service.similar, product_id, params, prefix(request))

    @app.get("/products/{product_id:path}/images/{n}", summary="A product's n-th image (URL images redirect)", response_model=None,
             response_class=Response, responses={
                 200: {"description": "The image file, with the media type of its content",
                       "content": {media: {"schema": {"type": "string", "format": "binary"}} for media in IMAGE_MEDIA_TYPES}},
                 307: {"description": "The catalog's image is an http(s) URL: go there"}, **_errors(404, 422, 503)})
    async def product_image(product_id: str, n: int) -> FileResponse | RedirectResponse:
        found = await service.run(service.image, product_id, n)
        if isinstance(found, str):
            return RedirectResponse(found, status_code=307)
        return FileResponse(found, media_type=media_type(found),
                            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})

    @app.get("/products/{product_id:path}", summary="One product's metadata", responses=_errors(404, 422, 503))
    async def product(request: Request, product_id: str) -> dict[str, Any]:
        return await service.run(service.product, product_id, prefix(request))

    @app.get("/healthz", summary="200 once the model and index are loaded and the index answers (not queued behind searches)",
             response_model=HealthOut, responses={503: {"model": HealthOut, "description": "The index does not answer"}})
    async def healthz() -> JSONResponse:
        try:
            counts = await service.health()
        except Exception as exc:  # noqa: BLE001 (the index went away or is unreadable: not ready)
            log.warning("health check failed: %s", exc)
            return SafeJSONResponse({"status": "unavailable"}, status_code=503)
        return SafeJSONResponse({"status": "ok", "products": counts["products"], "model": engine.encoder.identity.name})

    @app.get("/stats", summary="Counts, model, index type, catalog values and limits", responses=_errors(503))
    async def stats() -> dict[str, Any]:
        return await service.run(service.stats)

    _declare_limits(app, config, window=service.window)
    return app


class HealthOut(BaseModel):
    status: str
    products: int | None = None
    model: str | None = None


class SafeJSONResponse(JSONResponse):
    """JSON that always renders: text holding a lone surrogate is written as ``\\ud800`` escapes (valid JSON)
    and a non-finite float as null, where the plain response raised (HTTP 500)."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except (UnicodeEncodeError, ValueError):
            return json.dumps(_finite(content), ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


_ERROR_DESCRIPTIONS = {
    400: "The image cannot be decoded, or the multipart body is malformed",
    404: "No such product, or no such image of it",
    413: "The body, the photo or its pixels (count, aspect ratio, decoded size) are over a limit",
    415: "Not an accepted image format, or not multipart/form-data",
    422: "A parameter, filter or JSON body is invalid (each field named in errors)",
    503: "The index is unavailable right now",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses of a route, with their bodies."""
    return {code: {"model": ValidationErrorOut if code == 422 else ErrorOut, "description": _ERROR_DESCRIPTIONS[code]}
            for code in codes}


def _declare_limits(app: FastAPI, config: WebConfig, *, window: int) -> None:
    """Write this server's limits into the generated schema: the maxima of k, offset and terms."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        limits = {"k": {"maximum": config.max_k}, "offset": {"maximum": window - 1},
                  "terms": {"maxItems": config.max_terms}}
        notes = {"offset": f"offset + k must be at most {window}"}
        bodies = [schema.get("components", {}).get("schemas", {}).get(name, {}) for name in ("SearchIn", "UploadIn", "PageIn")]
        upload = schema["paths"].get("/search/image", {}).get("post", {}).get("requestBody", {})
        bodies.append(upload.get("content", {}).get("multipart/form-data", {}).get("schema", {}))
        for body in bodies:
            for name, properties in body.get("properties", {}).items():
                if name in limits:
                    properties.update(limits[name])
                    if name in notes:
                        properties["description"] = notes[name]
        for operation in schema["paths"].get("/products/{product_id}/similar", {}).values():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") in ("k", "offset"):
                    bounds = {"minimum": 1, **limits["k"]} if parameter["name"] == "k" else {"minimum": 0, **limits["offset"]}
                    parameter.setdefault("schema", {}).update(bounds)
                    if parameter["name"] == "offset":
                        parameter["description"] = notes["offset"]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema


IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "application/octet-stream")
_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF87a", "image/gif"),
          (b"GIF89a", "image/gif"), (b"BM", "image/bmp"))


def media_type(path: Path) -> str:
    """The media type of an image file by its content (a PNG named .jpg is image/png), not by its name."""
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError:
        return "application/octet-stream"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((media for magic, media in _MAGIC if head.startswith(magic)), "application/octet-stream")


def _validated(model: type[BaseModel], data: dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": (where, *e["loc"])} for e in exc.errors()]) from None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with ``{"detail": one line, "errors": [...]}`` (``ValidationErrorOut``)."""
    errors = []
    for raw in exc.errors():  # type: ignore[attr-defined]
        error = {"type": raw["type"], "loc": raw["loc"], "msg": raw["msg"]}  # never echo the input (a photo, say)
        if raw["type"] == "json_invalid":
            error.update(loc=("body",), msg=f"invalid JSON at character {raw['loc'][-1]} ({raw.get('ctx', {}).get('error', '')})")
        errors.append(error)
    field: Callable[[Any], str] = lambda loc: ".".join(str(x) for x in loc if x not in ("body", "form", "query", "path")) or "body"
    detail = "; ".join(f"{field(e['loc'])}: {e['msg']}" for e in errors)
    return SafeJSONResponse({"detail": detail, "errors": jsonable_encoder(errors)}, status_code=422)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    message = str(exc)
    if isinstance(exc, QueryError):
        return SafeJSONResponse({"detail": message}, status_code=422)
    if isinstance(exc, ImageError):
        status = 415 if isinstance(exc, ImageRefusedError) else 413 if isinstance(exc, ImageTooLargeError) else 400
        return SafeJSONResponse({"detail": message}, status_code=status)
    log.error("search failed: %s", message)
    return SafeJSONResponse({"detail": "the index is unavailable right now; see the server log"}, status_code=503)


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


