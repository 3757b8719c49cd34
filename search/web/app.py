"""The HTTP API and the upload-a-photo page over one opened ``SearchEngine`` (FastAPI).

    app = create_app(SearchEngine.open("my-index"), config=WebConfig(max_upload_bytes=5_000_000))

Endpoints (JSON, OpenAPI at ``/docs``): ``POST /search``, ``POST /search/image`` (multipart ``photo``),
``GET /products/{id}``, ``/products/{id}/similar``, ``/products/{id}/images/{n}``, ``/healthz``, ``/stats``,
``POST /events`` (with a search log) and the page at ``/``.  Searches answer ``{query, hits, has_more,
facets, facet_depth, ...}``; image fields are URLs of this server (``/products/{id}/images/{n}``), never
file paths; a catalog image that is an http(s) URL redirects there (307).

Refine syntax (the ``text`` of both searches): the words form one text term; a word or quoted phrase
after a minus sign (``-striped``, ``-"v neck"``) is a negative text term of ``negative_weight`` times
the text's weight: ``but in red -striped`` → ``"but in red"`` x1, ``"striped"`` x-0.5.

Query by vector: ``POST /search`` takes ``"vector": [...]`` (weighted by ``weights.vector``) and
``{"vector": [...], "weight": w}`` terms: a precomputed query vector of the index model's dimension
(finite numbers, not all zeros; scaled to unit length).  A bad shape or value is a 422 naming the field;
a vector of another dimension than the model's is a 422 naming both.

Search log (``vitrina serve --log [DIR|URL]``, off by default): each search answered carries ``query_id``;
``POST /events {"query_id", "product_id", "kind": "click" | "add_to_cart" | "purchase", "position"}``
reports what a shopper did with a hit (202; 404 for an unknown query id or with logging off).  A photo is
logged only as the SHA-256 of its bytes; nothing identifies the shopper (``search.web.events``).

Errors are ``{"detail": message}``: 404 unknown product or image; 413 upload, body or pixels over a
limit, decompression bombs; 415 not an accepted image format; 400 undecodable image or malformed
multipart; 422 bad parameters, filters or JSON (naming the field; ``errors`` lists each); 503 index
unavailable.  The OpenAPI schema documents each route's statuses with these bodies, and the limits
of this server (k, offset + k, terms) as the fields' maxima.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError

from indexer.errors import ImageError, ImageRefusedError, ImageTooLargeError, QueryError, VitrinaError

from search.web.docs import install_offline_docs
from search.web.uploads import BodyCap, read_form, megabytes
from search.behaviour.log import SearchLog
from search.web.events import SearchRecorder, add_event_routes
from search.web.models import ErrorOut, PageIn, SearchIn, SearchOut, UploadIn, ValidationErrorOut
from search.web.service import Service, WebConfig



STATIC_DIR = Path(__file__).resolve().parent / "static"
_SLACK = 64 * 1024  # room for multipart boundaries and the small fields beside the photo
_PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data: http: https:; style-src 'self'; script-src 'self'; "
             "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
log = logging.getLogger("vitrina.web")


def create_app(engine: Any, *, config: WebConfig = WebConfig(),
               search_log: SearchLog | None = None) -> FastAPI:
    """The API and the page over an opened ``SearchEngine``; the caller opens and closes it (and ``search_log``,
    where every search answered is recorded, when given)."""
    service = Service(engine, config)
    service.log = SearchRecorder(search_log, engine) if search_log is not None else None
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

    @app.post("/search", summary="Search by text (refine syntax), images, vectors and weighted terms",
              responses={**_SEARCH_OK, **_errors(400, 413, 415, 422, 503)})
    async def search(body: SearchIn, request: Request) -> dict[str, Any]:
        return await service.run(service.search, body, prefix(request))

    schema = UploadIn.model_json_schema()
    schema.update(properties={"photo": {"type": "string", "format": "binary"}, **schema["properties"]}, required=["photo"])

    @app.post("/search/image", summary="Upload a photo (multipart field 'photo'), optionally refined with text",
              openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}},
              responses={**_SEARCH_OK, **_errors(400, 413, 415, 422, 503)})
    async def search_image(request: Request) -> dict[str, Any]:
        fields, (filename, data) = await read_form(request, max_file=config.max_upload_bytes)
        form = _validated(UploadIn, fields, "form")
        return await service.run(service.search_upload, data, filename, form, prefix(request))

    @app.get("/products/{product_id:path}/similar", summary="More like this product (never the product itself)",
             responses={**_SEARCH_OK, **_errors(404, 422, 503)})
    async def similar(request: Request, product_id: str, k: int = 10, offset: int = 0, image_share: float | None = None,
                      where: str | None = Query(None, description="Filters as JSON"),
                      facets: str = Query("", description="Comma-separated facet fields"), rerank: bool | None = None,
                      sort: str | None = Query(None, description='Order the most similar hits by a field: "price", '
                                               '"-popularity" (descending)'),
                      boost: str | None = Query(None, description='Business boosts as FIELD=WEIGHT,... or JSON: '
                                                'margin=0.5,popularity=0.2'),
                      in_stock: bool | None = Query(None, description="Only products whose stock field is above 0")) -> dict[str, Any]:
        query = {"k": k, "offset": offset, "where": where, "image_share": image_share, "facets": facets, "rerank": rerank,
                 "sort": sort, "boost": boost, "in_stock": in_stock}
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
        return SafeJSONResponse({"status": "ok", "products": counts["products"], "model": engine.encoder.identity.name,
                                 "generation": getattr(engine, "generation", None)})

    @app.get("/stats", summary="Counts, model, index type, catalog values and limits", responses=_errors(503))
    async def stats() -> dict[str, Any]:
        return await service.run(service.stats)

    add_event_routes(app, search_log)  # POST /events (search.web.events)
    _declare_limits(app, config, window=service.window)
    return app


class HealthOut(BaseModel):
    status: str
    products: int | None = None
    model: str | None = None
    #: The index commit this server answers from (replicas over one database switch to a new one by themselves).
    generation: int | None = None


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


_SEARCH_OK: dict[int | str, dict[str, Any]] = {200: {"model": SearchOut, "description": "A page of hits"}}


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


