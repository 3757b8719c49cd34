"""The HTTP API's limits and errors (size caps, refused images, 422s), concurrency and `vitrina serve`."""

from __future__ import annotations

import base64
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

from search.web.app import create_app
from search.web.service import WebConfig
from test_web import client, encoded, ids, photo, refused, upload, web_catalog, web_engine  # noqa: F401,F811  (fixtures, helpers)

CAP = WebConfig().max_upload_bytes


# -- limits and errors -----------------------------------------------------------------------------
def padded_png(size: int) -> bytes:
    """A valid PNG of exactly ``size`` bytes (Pillow ignores bytes after IEND)."""
    data = encoded(Image.new("RGB", (16, 16), (200, 30, 30)), "PNG")
    return data + b"\0" * (size - len(data))


def fake_png(width: int, height: int) -> bytes:
    """A PNG header claiming ``width`` x ``height`` pixels: refused before any decoding."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_upload_at_the_size_cap_and_one_byte_over(client):
    assert upload(client, padded_png(CAP), k=1).status_code == 200
    refused(upload(client, padded_png(CAP + 1), k=1), 413, "10 MB")


def test_size_cap_is_enforced_while_streaming_without_content_length(web_engine):
    config = WebConfig(max_upload_bytes=20_000)
    boundary = "vitrina-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()

    def body(size: int):
        yield head
        data = padded_png(size)
        for start in range(0, len(data), 4096):
            yield data[start:start + 4096]
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    with TestClient(create_app(web_engine, config=config)) as test_client:
        assert test_client.post("/search/image", content=body(20_000), headers=headers).status_code == 200
        refused(test_client.post("/search/image", content=body(20_001), headers=headers), 413, "upload limit")
        refused(test_client.post("/search/image", content=body(200_000), headers=headers), 413)
        big = base64.b64encode(padded_png(40_000)).decode()
        refused(test_client.post("/search", json={"image": big}), 413, "limit")


def test_refused_images(client, web_catalog):
    with Image.open(web_catalog.parent / "images" / "p5_0.png") as source:
        image = source.convert("RGB")
    refused(upload(client, encoded(image, "TIFF"), name="photo.tif"), 415, "TIFF images are not accepted")
    refused(upload(client, b"GIF? no, just text", name="notes.txt"), 415, "not an image")
    refused(upload(client, photo(web_catalog)[:120], name="cut.png"), 400, "cannot decode")
    refused(upload(client, b"", name="empty.png"), 400, "empty")
    refused(upload(client, fake_png(12_000, 12_000), name="huge.png"), 413)
    refused(upload(client, fake_png(30_000, 30_000), name="bomb.png"), 413)
    refused(client.post("/search", json={"terms": [{"image": base64.b64encode(encoded(image, "TIFF")).decode()}]}), 415, "TIFF")
    refused(client.post("/search/image", data={"text": "red"}), 415, "multipart")


def test_bad_requests_are_422_naming_the_field(client):
    refused(client.post("/search", content=b'{"text": ', headers={"content-type": "application/json"}), 422, "invalid JSON")
    refused(client.post("/search", json={"text": "red", "where": {"nope": 1}}), 422, "unknown filter field 'nope'")
    refused(client.post("/search", json={"text": "red", "where": {"price": {"about": 3}}}), 422, "'about'")
    refused(client.post("/search", json={"text": "red", "colour": "blue"}), 422, "colour")
    refused(client.post("/search", json={"text": "red", "k": 0}), 422, "k")
    refused(client.post("/search", json={"text": "red", "k": 101}), 422, "k must be at most 100")
    refused(client.post("/search", json={"text": "red", "facets": ["size"]}), 422, "unknown facet field 'size'")
    refused(client.post("/search", json={"text": "red", "image_share": 2}), 422, "image_share")
    refused(client.post("/search", json={"terms": [{"image": "%%%"}]}), 422, "terms.0.image")
    refused(client.post("/search", json={"terms": [{"text": "a", "product": "P001"}]}), 422, "exactly one")
    refused(client.post("/search", json={"terms": [{"product": "NOPE"}]}), 422, "unknown product id 'NOPE'")
    refused(client.post("/search", json={}), 422, "empty query")
    refused(client.post("/search", json={"text": "-only -negatives"}), 422, "positive")
    refused(client.post("/search", json=[1, 2]), 422)
    refused(client.post("/search/image", files={"other": ("a.png", b"x")}), 422, "photo")
    refused(upload(client, b"x", where="{oops"), 422, "where")
    refused(upload(client, b"x", k="many"), 422, "k")
    refused(upload(client, b"x", colour="red"), 422, "colour")
    refused(client.post("/search/image", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"}), 400)


# -- concurrency ---------------------------------------------------------------------------------
def test_concurrent_requests_from_threads(client, web_catalog):
    data = photo(web_catalog)
    calls = [
        lambda i: ids(client.post("/search", json={"text": ["red", "blue circle", "triangle"][i % 3], "k": 5, "facets": ["brand"]})),
        lambda i: ids(upload(client, data, image_weight=1, image_share=1, k=3)),
        lambda i: ids(client.get(f"/products/P{i % 24:03d}/similar", params={"k": 4})),
    ]
    jobs = [(calls[i % 3], i) for i in range(48)]
    sequential = [call(i) for call, i in jobs]
    with ThreadPoolExecutor(max_workers=12) as pool:
        parallel = list(pool.map(lambda job: job[0](job[1]), jobs))
    assert parallel == sequential
    assert all(result[0] == "P005" for result in parallel[1::3])


# -- vitrina serve ---------------------------------------------------------------------------------
def test_serve_command_registers_and_fails_cleanly_without_an_index(tmp_path):
    import click

    from vitrina.commands.serve import register

    group = click.Group()
    register(group)
    runner = CliRunner()
    assert "Example:" in runner.invoke(group, ["serve", "--help"]).output
    result = runner.invoke(group, ["serve", "--index", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "not an index folder" in result.output
