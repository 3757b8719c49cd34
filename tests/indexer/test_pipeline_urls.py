"""Image URLs in a catalog: fetched with the SSRF guard, refused or allowed by the allowlist."""

import http.server
import json
import threading

import pytest
from click.testing import CliRunner

from conftest import draw_product
from vitrina.cli import cli


@pytest.fixture
def image_server(tmp_path):
    draw_product(tmp_path / "shoe.png", "red", "square")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_loopback_urls_are_refused_unless_allowed(tmp_path, image_server, tiny_model_dir):
    catalog = tmp_path / "c.jsonl"
    catalog.write_text(json.dumps({"id": "U1", "title": "red shoe", "images": [f"{image_server}/shoe.png"]}) + "\n"
                       + json.dumps({"id": "U2", "images": [f"{image_server}/missing.png"]}) + "\n")
    runner = CliRunner()
    refused = runner.invoke(cli, ["index", str(catalog), "--index", str(tmp_path / "a"), "--model", str(tiny_model_dir), "--json"])
    assert refused.exit_code == 0, refused.output
    report = json.loads(refused.output)
    assert (report["indexed"], report["failed"], report["images"]) == (1, 1, 0)
    assert any("loopback" in p["reason"] for p in report["problems"])
    allowed = runner.invoke(cli, ["index", str(catalog), "--index", str(tmp_path / "b"), "--model", str(tiny_model_dir),
                                  "--allow-network", "127.0.0.0/8", "--json"])
    report = json.loads(allowed.output)
    assert (report["indexed"], report["failed"], report["images"]) == (1, 1, 1)
    assert any("404" in p["reason"] for p in report["problems"] if p["product_id"] == "U2")
    bad = runner.invoke(cli, ["index", str(catalog), "--index", str(tmp_path / "c"), "--model", str(tiny_model_dir),
                              "--allow-network", "not-a-network"])
    assert bad.exit_code == 2 and "--allow-network" in bad.output and "Traceback" not in bad.output
