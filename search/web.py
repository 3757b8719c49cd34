"""The HTTP API and the upload-a-photo page over one opened ``SearchEngine`` (FastAPI).

    app = create_app(SearchEngine.open("my-index"), config=WebConfig(max_upload_bytes=5_000_000))

Endpoints (JSON in and out, OpenAPI at ``/docs``): ``POST /search``, ``POST /search/image`` (multipart
upload), ``GET /products/{id}``, ``GET /products/{id}/similar``, ``GET /products/{id}/images/{n}``,
``GET /healthz``, ``GET /stats`` and the page at ``/``.  Searches answer ``{hits, facets, has_more, ...}``;
a hit's ``image`` and its product's ``images`` are URLs of this server, never file paths.

Refine syntax (the ``text`` of both searches): words form one text term; a word or a quoted phrase
after a minus sign (``-striped``, ``-"v neck"``) becomes a negative text term weighing
``negative_weight`` times the text's weight.  ``"but in red -striped"`` → ``+"but in red"``, ``-"striped"``.

Errors are ``{"detail": message}``: 404 unknown product or image, 413 too large (upload, body, pixels,
decompression bomb), 415 not an accepted image format, 400 undecodable image or malformed body, 422 bad
parameters, filters or JSON (naming the field), 503 index unavailable.  Blocking work (decoding,
encoding, searching) runs in a bounded thread pool; the engine is shared by all requests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import json
import logging
import mimetypes
import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import func, select

from indexer.config import ImageLimits
from indexer.errors import ImageError, QueryError, VitrinaError
from indexer.images import decode_image
from indexer.schema import ImageRow, Product

from .facets import count_facets

try:
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # python-multipart < 0.0.13
    from multipart.multipart import MultipartParser, parse_options_header  # type: ignore[no-redef]

STATIC_DIR = Path(__file__).resolve().parent / "static"
_FORM_SLACK = 64 * 1024  # multipart boundaries, headers and the small text fields around the photo
_PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data: http: https:; style-src 'self'; script-src 'self'; "
             "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
_TOKEN = re.compile(r'([-\u2212]?)(?:"([^"]*)"|(\S+))')
log = logging.getLogger("vitrina.web")


@dataclass(frozen=True, kw_only=True)
class WebConfig:
    """Limits and defaults of the HTTP layer (the engine keeps its own ``SearchConfig``)."""

    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    allowed_formats: frozenset[str] = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP"})
    max_k: int = 100
    #: Facets are counted over this many top results of the query.
    facet_depth: int = 200
    #: Fixed price bucket edges; ``None``: round edges spanning the prices of the top results.
    price_edges: tuple[float, ...] | None = None
    negative_weight: float = 0.5
    #: Photo weight of ``/search/image`` when not given (the text gets 1 minus it).
    image_weight: float = 0.7
    search_threads: int = 4
    max_terms: int = 16

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_k", "facet_depth", "search_threads", "max_terms"):
            if getattr(self, name) < 1:
                raise ValueError(f"WebConfig.{name} must be at least 1")
        if not 0 <= self.image_weight <= 1 or self.negative_weight < 0:
            raise ValueError("WebConfig.image_weight must be within [0, 1] and negative_weight non-negative")

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_pixels=self.max_pixels, max_bytes=self.max_upload_bytes, allowed_formats=self.allowed_formats)

    @property
    def max_json_bytes(self) -> int:
        return 4 * -(-self.max_upload_bytes // 3) + _FORM_SLACK  # one photo in base64, plus the rest


def parse_refine(text: str) -> tuple[str, list[str]]:
    """``'but in red -striped -"v neck"'`` → ``("but in red", ["striped", "v neck"])``."""
    positive, negative = [], []
    for sign, quoted, word in _TOKEN.findall(text):
        value = (quoted or word.strip('"')).strip()
        if sign:
            value = value.lstrip("-\u2212").strip()
        if value and value.strip("-\u2212"):
            (negative if sign else positive).append(value)
    return " ".join(positive), negative


class Weights(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: float = Field(1.0, allow_inf_nan=False)
    image: float = Field(1.0, allow_inf_nan=False)


class TermIn(BaseModel):
    """One weighted term: exactly one of ``text`` (plain, no refine syntax), ``image`` (base64 or a
    ``data:`` URL) or ``product`` (an id); a negative weight pushes results away from it."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, max_length=2000)
    image: str | None = None
    product: str | None = None
    weight: float = Field(1.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_kind(self) -> TermIn:
        if sum(v is not None for v in (self.text, self.image, self.product)) != 1:
            raise ValueError("a term takes exactly one of text, image, product")
        return self


class PageIn(BaseModel):
    """Filters, paging, facets and scoring options shared by every search."""

    model_config = ConfigDict(extra="forbid")
    where: dict[str, Any] | None = Field(None, description='Filters (JSON): {"category": "shoes", "price": {"lt": 50}}')
    k: int = Field(10, ge=1, description="Hits per page")
    offset: int = Field(0, ge=0)
    image_share: float | None = Field(None, ge=0, le=1, description="How much product photos count against product text")
    facets: list[str] = Field(default_factory=list, description="Fields counted over the top results: category, brand, price, ...")
    rerank: bool = Field(False, description="Re-rank the candidates (ignored until the engine supports it)")

    @field_validator("where", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        return _json_object(value) if isinstance(value, str) else value

    @field_validator("facets", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


class SearchIn(PageIn):
    """``POST /search``: text (refine syntax) and/or an image, plus weighted terms, filters and paging."""

    text: str | None = Field(None, max_length=2000, description='Refine syntax: "red dress -striped -\\"v neck\\""')
    image: str | None = Field(None, description="A photo as base64 or a data: URL")
    weights: Weights = Field(default_factory=Weights, description="Weights of text and image")
    terms: list[TermIn] = Field(default_factory=list, max_length=64)
    exclude: list[str] = Field(default_factory=list, max_length=1000, description="Product ids to leave out")


class UploadIn(PageIn):
    """The fields of ``POST /search/image`` beside the ``photo`` file (image_share defaults to image_weight)."""

    text: str | None = Field(None, max_length=2000, description='Optional refine text: "but in red -striped"')
    image_weight: float | None = Field(None, ge=0, le=1, description="Photo weight 0..1; the text gets 1 minus it")


class _ImageRoots:
    """The folders the index's images live in (symlinks resolved); nothing outside them is served."""

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
    """What the routes do, as plain (blocking) methods over the engine."""

    def __init__(self, engine: Any, config: WebConfig):
        self.engine, self.config = engine, config
        with engine.store.engine.connect() as conn:
            self.roots = _ImageRoots(conn.execute(select(ImageRow.location)).scalars())
        fields = engine.info()["filter_fields"]
        self.facet_fields = ["category", "brand", "price", *[f for f in fields if f not in ("id", "category", "brand", "price")]]
        self.pool = ThreadPoolExecutor(max_workers=config.search_threads, thread_name_prefix="vitrina-web")

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.wrap_future(self.pool.submit(fn, *args))

    def search(self, body: SearchIn, prefix: str) -> dict[str, Any]:
        if len(body.terms) > self.config.max_terms:
            raise QueryError(f"at most {self.config.max_terms} terms")
        terms, echo = self._text_terms(body.text, body.weights.text)
        if body.image is not None:
            terms.append((self._decode(_b64(body.image, "image"), "image"), body.weights.image))
            echo.append({"kind": "image", "value": "image", "weight": body.weights.image})
        for i, t in enumerate(body.terms):
            if t.text is not None:
                terms.append((t.text, t.weight))
                echo.append({"kind": "text", "value": t.text, "weight": t.weight})
            elif t.image is not None:
                terms.append((self._decode(_b64(t.image, f"terms.{i}.image"), f"terms[{i}].image"), t.weight))
                echo.append({"kind": "image", "value": f"terms[{i}].image", "weight": t.weight})
            else:
                terms.append(({"product": t.product}, t.weight))
                echo.append({"kind": "product", "value": t.product, "weight": t.weight})
        call = lambda **kw: self.engine.search(terms=terms, exclude=body.exclude, **kw)  # noqa: E731
        return {"query": echo, **self.page(call, body, prefix)}

    def search_upload(self, data: bytes, filename: str, form: UploadIn, prefix: str) -> dict[str, Any]:
        weight = self.config.image_weight if form.image_weight is None else form.image_weight
        image = self._decode(data, filename)
        terms, echo = self._text_terms(form.text, 1.0 - weight)
        terms.append((image, weight))
        echo.append({"kind": "image", "value": filename, "weight": weight})
        share = weight if form.image_share is None else form.image_share
        call = lambda **kw: self.engine.search(terms=terms, **kw)  # noqa: E731
        return {"query": echo, **self.page(call, form.model_copy(update={"image_share": share}), prefix)}

    def similar(self, product_id: str, params: PageIn, prefix: str) -> dict[str, Any]:
        self.product(product_id, prefix)  # 404 when unknown
        call = lambda **kw: self.engine.similar(product_id, **kw)  # noqa: E731
        return {"query": [{"kind": "product", "value": product_id, "weight": 1.0}], **self.page(call, params, prefix)}

    def page(self, call: Callable[..., Any], params: Any, prefix: str) -> dict[str, Any]:
        """One page of hits, with facets counted over the top ``facet_depth`` results."""
        k, offset, depth = params.k, params.offset, self.config.facet_depth
        if k > self.config.max_k:
            raise QueryError(f"k must be at most {self.config.max_k}, got {k}")
        unknown = [f for f in params.facets if f not in self.facet_fields]
        if unknown:
            raise QueryError(f"unknown facet field {unknown[0]!r}; facet fields: {', '.join(self.facet_fields)}")
        accepts_rerank = "rerank" in inspect.signature(self.engine.search).parameters
        kw = {"where": params.where, "image_share": params.image_share, **({"rerank": params.rerank} if accepts_rerank else {})}
        facets, counted = {}, 0
        if params.facets:
            deep = call(k=depth, offset=0, **kw)
            counted = len(deep.hits)
            facets = count_facets([h.product for h in deep.hits], params.facets, price_edges=self.config.price_edges)
        if params.facets and offset + k < depth:
            result, hits, has_more = deep, deep.hits[offset:offset + k], len(deep.hits) > offset + k
        else:
            result = call(k=k + 1, offset=offset, **kw)
            hits, has_more = result.hits[:k], len(result.hits) > k
        return {
            "hits": [_hit_json(h, rank, prefix) for rank, h in enumerate(hits, start=offset + 1)],
            "k": k, "offset": offset, "has_more": has_more, "facets": facets, "facet_depth": counted,
            "rerank": {"requested": params.rerank, "applied": params.rerank and accepts_rerank},
            "timings_ms": result.timings,
        }

    def product(self, product_id: str, prefix: str) -> dict[str, Any]:
        try:
            return _public(self.engine.product(product_id), prefix)
        except QueryError:
            raise HTTPException(404, f"no product {product_id!r}") from None

    def image(self, product_id: str, n: int) -> str | Path:
        try:
            locations = self.engine.product(product_id)["images"]
        except QueryError:
            raise HTTPException(404, f"no product {product_id!r}") from None
        if not 0 <= n < len(locations):
            raise HTTPException(404, f"product {product_id!r} has no image {n}")
        if _is_url(locations[n]):
            return locations[n]
        path = self.roots.file(locations[n])
        if path is None:
            raise HTTPException(404, f"image {n} of product {product_id!r} is not available")
        return path

    def stats(self) -> dict[str, Any]:
        info = {k: v for k, v in self.engine.info().items() if k != "folder"}
        catalog: dict[str, Any] = {}
        with self.engine.store.engine.connect() as conn:
            for name, column in (("category", Product.category), ("brand", Product.brand)):
                rows = conn.execute(select(column, func.count()).where(column.is_not(None)).group_by(column)
                                    .order_by(func.count().desc(), column).limit(500)).all()
                catalog[name] = [{"value": v, "count": c} for v, c in rows]
            low, high = conn.execute(select(func.min(Product.price), func.max(Product.price))).one()
        catalog["price"] = {"min": low, "max": high}
        limits = {"max_upload_bytes": self.config.max_upload_bytes, "max_pixels": self.config.max_pixels,
                  "allowed_formats": sorted(self.config.allowed_formats), "max_k": self.config.max_k,
                  "facet_depth": self.config.facet_depth, "image_weight": self.config.image_weight}
        return {**info, "facet_fields": self.facet_fields, "catalog": catalog, "limits": limits}

    def _text_terms(self, text: str | None, weight: float) -> tuple[list[tuple[Any, float]], list[dict[str, Any]]]:
        positive, negatives = parse_refine(text or "")
        if weight == 0:
            return [], []
        terms = [(positive, weight)] if positive else []
        terms += [(n, -self.config.negative_weight * weight) for n in negatives]
        return terms, [{"kind": "text", "value": v, "weight": w} for v, w in terms]

    def _decode(self, data: bytes, name: str) -> Any:
        return decode_image(data, name=name, limits=self.config.image_limits)


def create_app(engine: Any, *, config: WebConfig = WebConfig()) -> FastAPI:
    """The API and page over an opened ``SearchEngine`` (the caller opens and closes it)."""
    service = _Service(engine, config)
    app = FastAPI(title="vitrina", version="0.1.0", summary="Cross-modal product search: by words, by photo, or both",
                  description="\n\n".join((__doc__ or "").split("\n\n")[2:]))
    app.state.service = service
    app.add_middleware(_BodyCap, default=config.max_json_bytes, per_path={"/search/image": config.max_upload_bytes + _FORM_SLACK})
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(VitrinaError, _domain_error)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    def prefix(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": _PAGE_CSP, "Cache-Control": "no-cache"})

    @app.post("/search", summary="Search by text (refine syntax), images and weighted terms")
    async def search(body: SearchIn, request: Request) -> dict[str, Any]:
        return await service.run(service.search, body, prefix(request))

    upload_schema = UploadIn.model_json_schema()
    upload_schema["properties"] = {"photo": {"type": "string", "format": "binary"}, **upload_schema["properties"]}
    upload_schema["required"] = ["photo"]

    @app.post("/search/image", summary="Upload a photo (multipart field 'photo'), optionally refined with text",
              openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": upload_schema}}}})
    async def search_image(request: Request) -> dict[str, Any]:
        fields, (filename, data) = await _read_form(request, max_file=config.max_upload_bytes)
        try:
            form = UploadIn.model_validate(fields)
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("form", *e["loc"])} for e in exc.errors()]) from None
        return await service.run(service.search_upload, data, filename, form, prefix(request))

    @app.get("/products/{product_id:path}/similar", summary="More like this product (never the product itself)")
    async def similar(request: Request, product_id: str, k: int = Query(10, ge=1), offset: int = Query(0, ge=0),
                      where: str | None = Query(None, description="Filters as JSON"), image_share: float | None = Query(None, ge=0, le=1),
                      facets: str = Query("", description="Comma-separated facet fields"), rerank: bool = False) -> dict[str, Any]:
        try:
            params = PageIn(k=k, offset=offset, where=where, image_share=image_share, facets=facets, rerank=rerank)
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("query", *e["loc"])} for e in exc.errors()]) from None
        return await service.run(service.similar, product_id, params, prefix(request))

    @app.get("/products/{product_id:path}/images/{n}", summary="A product's n-th image (URL images redirect)", response_model=None)
    async def product_image(product_id: str, n: int) -> FileResponse | RedirectResponse:
        found = await service.run(service.image, product_id, n)
        if isinstance(found, str):
            return RedirectResponse(found, status_code=307)
        media = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
        return FileResponse(found, media_type=media, headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})

    @app.get("/products/{product_id:path}", summary="One product's metadata")
    async def product(request: Request, product_id: str) -> dict[str, Any]:
        return await service.run(service.product, product_id, prefix(request))

    @app.get("/healthz", summary="200 when the model and index are loaded and the index answers")
    async def healthz() -> JSONResponse:
        try:
            counts = await service.run(engine.store.counts)
        except Exception as exc:  # the index went away or is unreadable: not ready
            log.warning("health check failed: %s", exc)
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "products": counts["products"], "model": engine.encoder.identity.name})

    @app.get("/stats", summary="Counts, model, index type, catalog values and limits")
    async def stats() -> dict[str, Any]:
        return await service.run(service.stats)

    return app


class _BodyCap:
    """ASGI middleware: refuse a request body over its path's limit with 413, while it streams in."""

    def __init__(self, app: Any, *, default: int, per_path: dict[str, int]):
        self.app, self.default, self.per_path = app, default, per_path

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.per_path.get(scope["path"], self.default)
        message = f"request body over the {limit}-byte limit"
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            return await JSONResponse({"detail": message}, status_code=413)(scope, receive, send)
        seen = 0

        async def capped() -> dict[str, Any]:
            nonlocal seen
            event = await receive()
            seen += len(event.get("body", b""))
            if seen > limit:
                raise HTTPException(413, message)
            return event

        await self.app(scope, capped, send)


async def _read_form(request: Request, *, max_file: int, max_field: int = _FORM_SLACK // 4,
                     max_parts: int = 16) -> tuple[dict[str, str], tuple[str, bytes]]:
    """Stream a multipart body: the ``photo`` file (at most ``max_file`` bytes) and small text fields."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise HTTPException(415, "send the photo as multipart/form-data in the field 'photo'")
    parts: list[dict[str, Any]] = []
    part: dict[str, Any] = {}
    header = [bytearray(), bytearray()]

    def begin() -> None:
        if len(parts) >= max_parts:
            raise HTTPException(400, f"at most {max_parts} form fields")
        part.clear()
        part.update(headers={}, data=bytearray())

    def header_end() -> None:
        part["headers"][bytes(header[0]).lower()] = bytes(header[1])
        header[0].clear()
        header[1].clear()

    def headers_done() -> None:
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        part["name"] = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        part["filename"] = None if filename is None else os.path.basename(filename.decode("utf-8", "replace"))[-120:] or "photo"
        part["limit"] = max_file if part["filename"] is not None else max_field

    def data(chunk: bytes, start: int, end: int) -> None:
        if len(part["data"]) + end - start > part["limit"]:
            what = f"the photo is over the {_megabytes(max_file)} upload limit" if part["filename"] is not None \
                else f"form field {part['name']!r} is over {max_field} bytes"
            raise HTTPException(413, what)
        part["data"] += chunk[start:end]

    callbacks = {"on_part_begin": begin, "on_header_field": lambda d, s, e: header[0].extend(d[s:e]),
                 "on_header_value": lambda d, s, e: header[1].extend(d[s:e]), "on_header_end": header_end,
                 "on_headers_finished": headers_done, "on_part_data": data, "on_part_end": lambda: parts.append(dict(part)),
                 "on_end": lambda: header.append(bytearray())}  # a third item: the closing boundary was seen
    parser = MultipartParser(options[b"boundary"], callbacks)
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except ValueError as exc:  # python-multipart's parse errors
        raise HTTPException(400, f"malformed multipart body ({exc})") from None
    if len(header) < 3:
        raise HTTPException(400, "incomplete multipart body (no closing boundary)")
    files = [p for p in parts if p["filename"] is not None and p["name"] == "photo"]
    if len(files) != 1:
        raise RequestValidationError([{"type": "missing", "loc": ("form", "photo"), "msg": "send exactly one file in the field 'photo'"}])
    extra = [p["name"] for p in parts if p["filename"] is not None and p["name"] != "photo"]
    if extra:
        raise RequestValidationError([{"type": "extra_forbidden", "loc": ("form", extra[0]), "msg": "unexpected file field"}])
    fields = {p["name"]: p["data"].decode("utf-8", "replace") for p in parts if p["filename"] is None}
    return fields, (files[0]["filename"], bytes(files[0]["data"]))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    errors = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in exc.errors()]  # type: ignore[attr-defined]
    for error, raw in zip(errors, exc.errors()):  # type: ignore[attr-defined]
        if error["type"] == "json_invalid":
            error.update(loc=("body",), msg=f"invalid JSON at character {raw['loc'][-1]} ({raw.get('ctx', {}).get('error', '')})")
    where = lambda loc: ".".join(str(x) for x in loc if x not in ("body", "form", "query", "path")) or "body"  # noqa: E731
    detail = "; ".join(f"{where(e['loc'])}: {e['msg']}" for e in errors)
    return JSONResponse({"detail": detail, "errors": jsonable_encoder(errors)}, status_code=422)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, QueryError):
        return JSONResponse({"detail": str(exc)}, status_code=422)
    if isinstance(exc, ImageError):
        message = str(exc)
        lowered = message.lower()
        status = 415 if "not accepted" in lowered or "not an image" in lowered else \
            413 if "limit" in lowered or "decompression bomb" in lowered else 400
        return JSONResponse({"detail": message}, status_code=status)
    log.error("search failed: %s", exc)
    return JSONResponse({"detail": "the index is unavailable right now; see the server log"}, status_code=503)


def _public(product: dict[str, Any], prefix: str) -> dict[str, Any]:
    base = f"{prefix}/products/{quote(product['id'], safe='')}/images/"
    return {**product, "images": [f"{base}{n}" for n in range(len(product["images"]))]}


def _hit_json(hit: Any, rank: int, prefix: str) -> dict[str, Any]:
    product = _public(hit.product, prefix)
    image = product["images"][hit.image_index] if hit.image_index is not None else (product["images"] or [None])[0]
    return {"rank": rank, "product_id": hit.product_id, "score": hit.score, "scores": hit.scores,
            "image": image, "image_index": hit.image_index, "product": product}


def _b64(text: str, field: str) -> bytes:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestValidationError([{"type": "value_error", "loc": ("body", *field.split(".")), "msg": "not valid base64"}]) from None


def _json_object(text: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return value


def _is_url(location: str) -> bool:
    return location.lower().startswith(("http://", "https://"))


def _megabytes(n: int) -> str:
    return f"{n / 1024 / 1024:.3g} MB" if n >= 1024 * 1024 else f"{n} bytes"
