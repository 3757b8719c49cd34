"""Upload handling for the HTTP API: a streaming body cap and a bounded multipart reader."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from starlette.types import ASGIApp

try:
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # python-multipart < 0.0.13
    from multipart.multipart import MultipartParser, parse_options_header  # type: ignore[no-redef]


class BodyCap:
    """ASGI middleware: a request body over its path's limit gets 413, checked while it streams in."""

    def __init__(self, app: ASGIApp, *, default: tuple[int, str], per_path: dict[str, tuple[int, str]]):
        self.app, self.default, self.per_path = app, default, per_path

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit, message = self.per_path.get(scope["path"], self.default)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            return await JSONResponse({"detail": message}, status_code=413)(scope, receive, send)
        seen = 0

        async def capped() -> dict[str, Any]:
            nonlocal seen
            event: dict[str, Any] = await receive()
            seen += len(event.get("body", b""))
            if seen > limit:
                raise HTTPException(413, message)
            return event

        await self.app(scope, capped, send)


async def read_form(request: Request, *, max_file: int, max_field: int = 16 * 1024,
                     max_parts: int = 16) -> tuple[dict[str, str], tuple[str, bytes]]:
    """Stream a multipart body: one ``photo`` file of at most ``max_file`` bytes and small text fields."""
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise HTTPException(415, "send the photo as multipart/form-data in the field 'photo'")
    parts: list[dict[str, Any]] = []
    name, value, ended = bytearray(), bytearray(), []

    def begin() -> None:
        if len(parts) >= max_parts:
            raise HTTPException(400, f"at most {max_parts} form fields")
        parts.append({"headers": {}, "data": bytearray()})

    def header_end() -> None:
        parts[-1]["headers"][bytes(name).lower()] = bytes(value)
        name.clear()
        value.clear()

    def headers_done() -> None:
        part = parts[-1]
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        part["name"] = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        part["filename"] = None if filename is None else os.path.basename(filename.decode("utf-8", "replace"))[-120:] or "photo"

    def data(chunk: bytes, start: int, end: int) -> None:
        part = parts[-1]
        if len(part["data"]) + end - start > (max_file if part["filename"] is not None else max_field):
            raise HTTPException(413, f"the photo is over the {megabytes(max_file)} upload limit" if part["filename"] is not None
                                else f"form field {part['name']!r} is over {max_field} bytes")
        part["data"] += chunk[start:end]

    parser = MultipartParser(options[b"boundary"], {
        "on_part_begin": begin, "on_header_field": lambda d, s, e: name.extend(d[s:e]),
        "on_header_value": lambda d, s, e: value.extend(d[s:e]), "on_header_end": header_end,
        "on_headers_finished": headers_done, "on_part_data": data, "on_end": lambda: ended.append(True)})
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except ValueError as exc:  # python-multipart's parse errors
        raise HTTPException(400, f"malformed multipart body ({exc})") from None
    if not ended:
        raise HTTPException(400, "incomplete multipart body (no closing boundary)")
    files = [p for p in parts if p["filename"] is not None]
    if [p["name"] for p in files] != ["photo"]:
        raise RequestValidationError([{"type": "value_error", "loc": ("form", "photo"), "msg": "send one file, in the field 'photo'"}])
    fields = {p["name"]: p["data"].decode("utf-8", "replace") for p in parts if p["filename"] is None}
    return fields, (files[0]["filename"], bytes(files[0]["data"]))


def megabytes(n: int) -> str:
    return f"{n / 1024 / 1024:.3g} MB" if n >= 1024 * 1024 else f"{n} bytes"
