"""The search log over HTTP (``vitrina serve --log DIR``): searches recorded with what was shown, ``POST /events``,
rotation, a log that fails to write, a full queue, and the page's click report in a real browser."""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from search.behaviour.log import LOG_FILE, LoggedSearch, LogConfig, SearchLog, ShownHit, read_log, rotated_files
from search.web.app import create_app
from search.web.events import EventIn
from test_web import photo, refused, upload, web_catalog, web_engine  # noqa: F401,F811  (fixtures, helpers)


@pytest.fixture
def log_folder(tmp_path) -> Path:
    return tmp_path / "search-log"


def open_logged(engine, folder: Path, config: LogConfig = LogConfig()):
    search_log = SearchLog(folder, config)
    return search_log, TestClient(create_app(engine, search_log=search_log))


@pytest.fixture
def logged(web_engine, log_folder):
    """(client, log) over the shared test index, logging to a fresh folder."""
    search_log, client = open_logged(web_engine, log_folder)
    with client:
        yield client, search_log
    search_log.close()


def searched(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def log_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


# -- searches recorded -----------------------------------------------------------------------------
def test_searches_are_logged_with_what_was_shown_and_photos_only_as_hashes(logged, log_folder, web_catalog, web_engine):
    client, search_log = logged
    where = {"price": {"lt": 1000}}
    text = searched(client.post("/search", json={"text": "red square -circle", "k": 3, "offset": 2, "where": where,
                                                 "facets": ["category"], "exclude": ["P999"]}))
    data = photo(web_catalog)
    image = searched(upload(client, data, text="but in blue", k=4))
    b64 = searched(client.post("/search", json={"terms": [{"image": base64.b64encode(data).decode(), "weight": 0.5},
                                                          {"product": "P003"}], "k": 2}))
    similar = searched(client.get("/products/P001/similar", params={"k": 3}))
    answers = [text, image, b64, similar]
    assert all(len(a["query_id"]) == 32 for a in answers) and len({a["query_id"] for a in answers}) == 4
    search_log.flush()

    searches, events = read_log(log_folder)
    assert events == [] and [s.query_id for s in searches] == [a["query_id"] for a in answers]
    for logged_search, answer in zip(searches, answers):
        assert [(h.product_id, h.position) for h in logged_search.shown] == [(h["product_id"], h["rank"]) for h in answer["hits"]]
        for shown, hit in zip(logged_search.shown, answer["hits"]):
            assert shown.score == pytest.approx(hit["score"])
            assert dict(shown.scores) == pytest.approx({k: v for k, v in hit["scores"].items() if v is not None})
            assert "fused" in shown.scores
        assert logged_search.generation == web_engine.info()["generation"]
        assert logged_search.at == pytest.approx(time.time(), abs=60)
    first = searches[0]
    assert [h.position for h in first.shown] == [3, 4, 5]  # 1-based, counting the offset
    assert first.terms == [{"text": "red square", "weight": 1.0}, {"text": "circle", "weight": -0.5}]
    assert first.where == where and first.text is None
    assert {"k": 3, "offset": 2, "image_share": None, "rerank": None, "exclude": ["P999"]}.items() <= first.params.items()
    assert "facets" not in first.params and "text" not in first.params
    assert {"lexical_weight", "field_weight"} <= set(first.params["weights"])

    digest = hashlib.sha256(data).hexdigest()
    assert searches[1].terms == [{"text": "but in blue", "weight": pytest.approx(0.3)}, {"image_sha256": digest, "weight": 0.7}]
    assert searches[2].terms == [{"image_sha256": digest, "weight": 0.5}, {"product": "P003", "weight": 1.0}]
    assert searches[3].terms == [{"product": "P001", "weight": 1.0}] and searches[3].params["k"] == 3
    stored = log_bytes(log_folder)
    assert data not in stored and base64.b64encode(data) not in stored and data[8:40] not in stored


def test_a_plain_text_query_reads_back_as_text_and_a_vector_as_its_hash(logged, log_folder, web_engine):
    import numpy as np

    client, search_log = logged
    vector = [0.25, -0.5] * (web_engine.encoder.dim // 2)
    searched(client.post("/search", json={"text": "green circle", "k": 2}))
    searched(client.post("/search", json={"vector": vector, "k": 2}))
    search_log.flush()
    searches, _ = read_log(log_folder)
    assert searches[0].text == "green circle"
    expected = hashlib.sha256(np.asarray(vector, dtype="<f4").tobytes()).hexdigest()
    assert searches[1].terms == [{"vector_sha256": expected, "vector_dims": len(vector), "weight": 1.0}]
    assert searches[1].text is None


def test_without_a_log_nothing_changes(client_without_log):
    answer = searched(client_without_log.post("/search", json={"text": "red", "k": 2}))
    assert "query_id" not in answer
    refused(client_without_log.post("/events", json={"query_id": "0" * 32, "product_id": "P001", "kind": "click"}),
            404, "event logging is off", "--log")


@pytest.fixture
def client_without_log(web_engine):
    with TestClient(create_app(web_engine)) as client:
        yield client


def test_openapi_documents_query_id_and_events(client_without_log):
    spec = client_without_log.get("/openapi.json").json()
    for path, method in (("/search", "post"), ("/search/image", "post"), ("/products/{product_id}/similar", "get")):
        ok = spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"] == "#/components/schemas/SearchOut"
    assert "query_id" in spec["components"]["schemas"]["SearchOut"]["properties"]
    events = spec["paths"]["/events"]["post"]
    assert {"202", "400", "404", "422"} <= set(events["responses"])
    assert events["responses"]["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ValidationErrorOut"}
    body = spec["components"]["schemas"]["EventIn"]
    assert body["additionalProperties"] is False and set(body["required"]) == {"query_id", "product_id", "kind"}


# -- events ----------------------------------------------------------------------------------------
def test_events_are_accepted_for_logged_searches(logged, log_folder):
    client, search_log = logged
    answer = searched(client.post("/search", json={"text": "blue triangle", "k": 3}))
    hit = answer["hits"][1]
    for kind in ("click", "add_to_cart", "purchase"):
        response = client.post("/events", json={"query_id": answer["query_id"], "product_id": hit["product_id"],
                                                "kind": kind, "position": hit["rank"]})
        assert response.status_code == 202 and response.json() == {"accepted": True}
    assert client.post("/events", json={"query_id": answer["query_id"], "product_id": "P000", "kind": "click"}).status_code == 202
    search_log.flush()
    _, events = read_log(log_folder)
    assert [(e.query_id, e.product_id, e.kind, e.position) for e in events] == [
        (answer["query_id"], hit["product_id"], "click", 2), (answer["query_id"], hit["product_id"], "add_to_cart", 2),
        (answer["query_id"], hit["product_id"], "purchase", 2), (answer["query_id"], "P000", "click", None)]


def test_events_of_an_older_server_run_are_found_in_the_file(web_engine, log_folder):
    first, client = open_logged(web_engine, log_folder)
    with client:
        query_id = searched(client.post("/search", json={"text": "red", "k": 1}))["query_id"]
    first.close()
    again, client = open_logged(web_engine, log_folder)  # a restart: nothing remembered in memory
    with client:
        assert client.post("/events", json={"query_id": query_id, "product_id": "P000", "kind": "click"}).status_code == 202
    again.close()
    assert [e.query_id for e in read_log(log_folder)[1]] == [query_id]


@pytest.mark.parametrize("body, field", [
    ({"product_id": "P001", "kind": "click"}, "query_id"),
    ({"query_id": "q", "kind": "click"}, "product_id"),
    ({"query_id": "q", "product_id": "P001"}, "kind"),
    ({"query_id": "q", "product_id": "P001", "kind": "view"}, "kind"),
    ({"query_id": "q", "product_id": "P001", "kind": "click", "position": 0}, "position"),
    ({"query_id": "q", "product_id": "P001", "kind": "click", "position": "3"}, "position"),
    ({"query_id": "q", "product_id": "P001", "kind": "click", "position": True}, "position"),
    ({"query_id": "q", "product_id": "P001", "kind": "click", "position": 1.5}, "position"),
    ({"query_id": 7, "product_id": "P001", "kind": "click"}, "query_id"),
    ({"query_id": "q", "product_id": ["P001"], "kind": "click"}, "product_id"),
    ({"query_id": "q", "product_id": "P001", "kind": "click", "user": "ann"}, "user"),
    ({"query_id": "", "product_id": "P001", "kind": "click"}, "query_id"),
])
def test_bad_event_bodies_are_422_naming_the_field(logged, body, field):
    client, _ = logged
    answer = refused(client.post("/events", json=body), 422, field)
    assert answer["errors"] and all(set(e) == {"type", "loc", "msg"} for e in answer["errors"])


def test_bad_event_json_and_unknown_query_ids(logged, log_folder):
    client, search_log = logged
    refused(client.post("/events", content=b"{not json", headers={"content-type": "application/json"}), 422, "invalid JSON")
    refused(client.post("/events", json=["click"]), 422)
    refused(client.post("/events", content=b"\xff\xfe{", headers={"content-type": "application/json"}), 400)
    for field in ("query_id", "product_id"):  # a lone surrogate never reaches SQLite
        body = {"query_id": "q", "product_id": "P001", "kind": "click", field: "\\ud800"}
        raw = ", ".join(f'"{k}": "{v}"' for k, v in body.items())
        refused(client.post("/events", content=("{" + raw + "}").encode(), headers={"content-type": "application/json"}),
                422, field)
    refused(client.post("/events", json={"query_id": "f" * 32, "product_id": "P001", "kind": "click"}), 404,
            "unknown query_id", "f" * 32)
    search_log.flush()
    assert read_log(log_folder)[1] == []


def test_event_kinds_match_the_log():
    from typing import get_args

    from search.behaviour.log import EVENT_KINDS

    assert get_args(EventIn.model_fields["kind"].annotation) == EVENT_KINDS


# -- rotation, failures, a full queue --------------------------------------------------------------
def test_rotation_keeps_at_most_keep_files(web_engine, log_folder):
    search_log, client = open_logged(web_engine, log_folder, LogConfig(max_bytes=4096, keep=2))
    ids = []
    with client:
        for word in ("red", "green", "blue", "yellow", "square", "circle"):
            ids.append(searched(client.post("/search", json={"text": word, "k": 5}))["query_id"])
            search_log.flush()
            assert len(rotated_files(log_folder)) <= 2
    search_log.close()
    rotated = rotated_files(log_folder)
    assert len(rotated) == 2 and [p.name for p in rotated] == ["log.5.db", "log.6.db"]
    assert {p.name for p in log_folder.iterdir() if p.name.endswith(".db")} == {LOG_FILE, "log.5.db", "log.6.db"}
    assert [s.query_id for s in read_log(log_folder)[0]] == ids[-2:]  # the live file is new and empty


class FullDisk:
    """A connection whose every write fails as on a full disk."""

    def __enter__(self) -> FullDisk:
        raise sqlite3.OperationalError("database or disk is full")

    def __exit__(self, *exc: object) -> None:
        return None

    def executemany(self, *args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    def close(self) -> None:
        return None


def test_a_log_that_cannot_write_turns_off_and_searches_go_on(logged, web_catalog, caplog):
    client, search_log = logged
    search_log.store._conn.close()  # type: ignore[attr-defined]
    search_log.store._conn = FullDisk()  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="vitrina.log"):
        first = searched(client.post("/search", json={"text": "red", "k": 2}))
        search_log.flush()
    assert not search_log.enabled
    assert any(r.name == "vitrina.log" and "database or disk is full" in r.getMessage() and "searches go on" in r.getMessage()
               for r in caplog.records)
    after = searched(client.post("/search", json={"text": "red", "k": 2}))
    assert "query_id" not in after and after["hits"] == first["hits"]
    refused(client.post("/events", json={"query_id": first["query_id"], "product_id": "P001", "kind": "click"}),
            404, "event logging is off")
    assert "query_id" not in searched(upload(client, photo(web_catalog), k=1))


def test_logging_tries_again_after_retry_seconds(web_engine, log_folder, caplog):
    search_log, client = open_logged(web_engine, log_folder, LogConfig(retry_seconds=0.3))
    write, failures = search_log.store.write, []

    def fails_once(searches, events):
        if not failures:
            failures.append(len(searches))
            raise OSError(28, "No space left on device")
        write(searches, events)

    search_log.store.write = fails_once  # type: ignore[method-assign]
    with client, caplog.at_level(logging.WARNING, logger="vitrina.log"):
        searched(client.post("/search", json={"text": "red", "k": 2}))
        search_log.flush()
        assert not search_log.enabled and "query_id" not in searched(client.post("/search", json={"text": "red", "k": 2}))
        time.sleep(0.35)
        again = searched(client.post("/search", json={"text": "blue", "k": 2}))
        search_log.flush()
    search_log.close()
    assert failures == [1] and search_log.enabled and "query_id" in again
    assert [s.query_id for s in read_log(log_folder)[0]] == [again["query_id"]]
    messages = [r.getMessage() for r in caplog.records if r.name == "vitrina.log"]
    assert any("No space left" in m and "trying again in 0.3 s" in m for m in messages)
    assert any("trying to write again" in m for m in messages)


def test_a_full_queue_drops_rows_instead_of_blocking(web_engine, log_folder):
    search_log, client = open_logged(web_engine, log_folder, LogConfig(queue_size=1))
    release, writing = threading.Event(), threading.Event()
    write = search_log._write

    def stalled(rows):
        writing.set()
        release.wait(30)
        write(rows)

    search_log._write = stalled  # type: ignore[method-assign]
    try:
        with client:
            started = time.perf_counter()
            answers = [searched(client.post("/search", json={"text": "red", "k": 2})) for _ in range(6)]
            assert writing.wait(5)
            shown = ShownHit(product_id="P001", position=1, score=1.0)
            for _ in range(200):
                search_log.record_search(LoggedSearch(query_id="x", at=0.0, terms=[{"text": "x", "weight": 1.0}], shown=[shown]))
            elapsed = time.perf_counter() - started
    finally:
        release.set()
    search_log.flush()
    search_log.close()
    assert elapsed < 20 and all("query_id" in a for a in answers)
    # the writer held the rows it had gathered when it stalled (at most the 6 searches), the queue one more
    written = read_log(log_folder)[0]
    assert search_log.dropped >= 199 and 1 <= len(written) <= 7  # 200 rows at a full one-row queue: one fits


# -- vitrina serve --log ---------------------------------------------------------------------------
def test_serve_opens_the_log_and_refuses_it_with_several_workers(web_engine, tmp_path):
    import click

    from vitrina.commands.serve import open_app, register

    group = click.Group()
    register(group)
    runner = CliRunner()
    help_text = runner.invoke(group, ["serve", "--help"]).output
    assert "--log [DIR|URL]" in help_text and "--log-max-bytes" in help_text and "--log-keep" in help_text
    index = str(web_engine.store.folder)
    result = runner.invoke(group, ["serve", "--index", index, "--log", str(tmp_path / "log"), "--workers", "2"])
    assert result.exit_code == 2 and "--log DIR needs --workers 1" in result.output and "PostgreSQL" in result.output
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(group, ["serve", "--index", index, "--log", str(blocker / "log")])
    assert result.exit_code == 1 and "cannot keep the search log" in result.output

    settings = {"index": index, "max_upload_bytes": 1_000_000, "facet_depth": 50, "search_threads": 2,
                "log": str(tmp_path / "log"), "log_max_bytes": 1_000_000, "log_keep": 1}
    app, engine = open_app(settings)
    try:
        assert app.state.search_log.config == LogConfig(max_bytes=1_000_000, keep=1)
        with TestClient(app) as client:
            query_id = searched(client.post("/search", json={"text": "red", "k": 1}))["query_id"]
    finally:
        app.state.search_log.close()
        engine.close()
    assert [s.query_id for s in read_log(tmp_path / "log")[0]] == [query_id]
    app, engine = open_app({**settings, "log": None})
    try:
        assert app.state.search_log is None
    finally:
        engine.close()


# -- the page reports clicks -----------------------------------------------------------------------
class ThreadedServer:
    """The app under uvicorn on a free loopback port, in a thread of this process."""

    def __init__(self, app):
        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.mark.browser
def test_the_page_reports_a_click_on_a_result_card(web_engine, log_folder):
    from test_browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        import os

        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; CI must run the browser tests (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); set CI=1 to make this a failure")
    from playwright.sync_api import expect, sync_playwright

    search_log = SearchLog(log_folder)
    server = ThreadedServer(create_app(web_engine, search_log=search_log))
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                tab = browser.new_page()
                tab.set_default_timeout(15_000)
                problems: list[str] = []
                tab.on("console", lambda m: m.type == "error" and problems.append(m.text))
                tab.on("response", lambda r: r.status >= 400 and problems.append(f"{r.status} {r.url}"))
                tab.goto(server.base + "/")
                tab.wait_for_selector("body[data-ready='true']")
                tab.fill("#q", "red square")
                with tab.expect_response(lambda r: r.url.endswith("/search")) as searching:
                    tab.press("#q", "Enter")
                query_id = searching.value.json()["query_id"]
                cards = tab.locator("#results .card")
                expect(cards.first).to_be_visible()
                second = cards.nth(1)
                product_id = second.get_attribute("data-product-id")
                with tab.expect_response(lambda r: r.url.endswith("/events")) as reporting:
                    second.locator(".title").click()
                assert reporting.value.status == 202
                second.locator(".title").click()  # a second click on the same card is not reported again
                tab.wait_for_timeout(300)
                assert problems == []
            finally:
                browser.close()
    finally:
        server.stop()
        search_log.close()
    searches, events = read_log(log_folder)
    assert [s.query_id for s in searches] == [query_id]
    assert [(e.query_id, e.product_id, e.kind, e.position) for e in events] == [(query_id, product_id, "click", 2)]
