"""``vitrina serve``: the HTTP API and the upload-a-photo page (``search.web.app``) under uvicorn.

The model and the index load once, before the port opens, so ``/healthz`` answers only when
both are ready.  With ``--workers N`` each worker process loads its own copy; the settings
travel to them in the ``VITRINA_SERVE_SETTINGS`` environment variable.

``--log [DIR|URL]`` records every search answered and the events the page reports (``search.behaviour.log``,
``search.web.events``): in SQLite files in a folder (one worker, the only writer of the folder) or in
PostgreSQL (any number of workers and replicas); ``--log`` alone picks the index's own database when its
metadata lives in PostgreSQL, else the folder ``INDEX/search-log``.

This module imports nothing of ``vitrina.cli`` (the CLI imports it, and a uvicorn worker
imports it on its own).
"""

from __future__ import annotations

import json
import os
from contextlib import asynccontextmanager
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import click

from vitrina.commands.behaviour import log_location
from vitrina.options import DB_OPTION, DEVICE_OPTION

SETTINGS_ENV = "VITRINA_SERVE_SETTINGS"


def register(cli: click.Group) -> None:
    cli.add_command(serve_command)


def open_app(settings: dict[str, Any]) -> tuple[Any, Any]:
    """(app, engine) from serve settings; the caller closes the engine, and ``app.state.search_log`` (None
    without ``--log``)."""
    from indexer.store.reader import IndexStore
    from search import SearchEngine
    from search.behaviour.log import LogConfig, SearchLog
    from search.web.app import create_app
    from search.web.service import WebConfig
    from vitrina.options import query_model

    database = settings.get("database")
    with IndexStore.open(settings["index"], database=database) as store:  # a missing index fails here, before the model
        model = query_model(store.model_spec, model=settings.get("model"), pretrained=settings.get("pretrained"),
                            threads=settings.get("threads"), device=settings.get("device") or "auto")
    engine = SearchEngine.open(settings["index"], model=model, database=database)
    search_log = None
    try:
        if settings.get("refresh_seconds"):
            engine.follow(settings["refresh_seconds"])
        config = WebConfig(max_upload_bytes=settings["max_upload_bytes"], facet_depth=settings["facet_depth"],
                           search_threads=settings["search_threads"])
        if settings.get("log"):
            search_log = SearchLog(settings["log"], LogConfig(max_bytes=settings["log_max_bytes"], keep=settings["log_keep"]))
        app = create_app(engine, config=config, search_log=search_log)
        app.state.search_log = search_log
        return app, engine
    except BaseException:
        if search_log is not None:
            search_log.close()
        engine.close()
        raise


def app_from_env() -> Any:
    """The app of one uvicorn worker (``--workers N``), built from ``$VITRINA_SERVE_SETTINGS``."""
    app, _engine = open_app(json.loads(os.environ[SETTINGS_ENV]))
    search_log = app.state.search_log
    if search_log is not None:  # the engine lives as long as the worker process; the log's queue is written at shutdown

        @asynccontextmanager
        async def lifespan(_app: Any) -> AsyncIterator[None]:
            yield
            search_log.close()

        app.router.lifespan_context = lifespan
    return app


@click.command("serve")
@click.option("--index", "index_dir", envvar="VITRINA_INDEX", required=True, type=click.Path(path_type=Path),
              help="Index folder (default: $VITRINA_INDEX).")
@DB_OPTION
@click.option("--refresh-seconds", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Check for a new commit this often and load it in the background (0: only when a query "
                   "notices): replicas over one database and index folder switch to each commit by themselves.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes; each loads the model and the index.")
@click.option("--model", help="open_clip model to query with (default: the one the index was built with).")
@click.option("--pretrained", help="Pretrained tag or checkpoint for --model.")
@click.option("--threads", type=click.IntRange(min=1), help="Torch CPU threads per worker (default: torch's choice).")
@DEVICE_OPTION
@click.option("--search-threads", default=4, show_default=True, type=click.IntRange(1, 256),
              help="Searches run at once per worker (the thread pool for decoding, encoding and searching).")
@click.option("--max-upload-mb", default=10.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Largest photo accepted (413 above it).")
@click.option("--facet-depth", default=200, show_default=True, type=click.IntRange(1, 1000),
              help="Facets count this many top results of a query.")
@click.option("--log", "log_to", is_flag=False, flag_value="", default=None, metavar="[DIR|URL]",
              help="Record every search answered and the events shoppers report (POST /events), off by default: "
                   "in SQLite files in folder DIR (one worker), or in the PostgreSQL database at URL (any number of "
                   "workers and replicas). --log alone: the index's own PostgreSQL database when its metadata lives "
                   "there, else the folder INDEX/search-log. See README: Search log.")
@click.option("--log-max-bytes", default=256 * 1024 * 1024, show_default=True, type=click.IntRange(min=4096),
              help="With --log: rotate the live log file (PostgreSQL: partition) past this size.")
@click.option("--log-keep", default=4, show_default=True, type=click.IntRange(min=0),
              help="With --log: rotated log files (partitions) kept; the oldest beyond this is deleted.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]), help="uvicorn's log level.")
def serve_command(index_dir: Path, database: str | None, refresh_seconds: float, host: str, port: int, workers: int, model: str | None, pretrained: str | None,
                  threads: int | None, device: str, search_threads: int, max_upload_mb: float, facet_depth: int,
                  log_to: str | None, log_max_bytes: int, log_keep: int, log_level: str) -> None:
    """Serve the search API and the upload-a-photo page over HTTP.

    Open http://HOST:PORT/ for the page, /docs for the API. The model and the index
    load once at start (the server listens only then); /healthz answers 200 with the
    generation (commit) it answers from. Several replicas can serve one index: its
    metadata in PostgreSQL (--db) and its folder on shared storage; each loads every
    new commit within about --refresh-seconds.

    Example:

        vitrina serve --index my-index --port 8000

        vitrina serve --index my-index --log search-log   # and learn from the shop

        vitrina serve --index my-index --log --workers 4   # metadata in PostgreSQL: the log goes there too

        vitrina serve --index /shared/shop --db postgresql+psycopg://vitrina@db/shop --host 0.0.0.0
    """
    import uvicorn

    from indexer.errors import VitrinaError

    from search.behaviour.log import is_database_url

    try:
        log = log_location(log_to, index_dir, database) if log_to is not None else None
    except VitrinaError as exc:
        raise click.ClickException(str(exc)) from None
    if log and not is_database_url(log):
        log = str(Path(log).resolve())  # the workers' working folder may differ
    settings = {
        "index": str(index_dir.resolve()), "model": model, "pretrained": pretrained, "threads": threads, "device": device,
        "max_upload_bytes": int(max_upload_mb * 1024 * 1024), "facet_depth": facet_depth, "search_threads": search_threads,
        "log": log, "log_max_bytes": log_max_bytes, "log_keep": log_keep,
        "database": database, "refresh_seconds": refresh_seconds,
    }
    if log and workers > 1 and not is_database_url(log):
        raise click.UsageError("--log DIR needs --workers 1 (one process writes a log folder); keep the log in "
                               "PostgreSQL for several workers: --log URL, or --log alone when the index's metadata is there")
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    try:
        if workers > 1:
            from indexer.store.reader import IndexStore

            IndexStore.open(index_dir, database=database).close()  # fail here, not in every worker
            if log:
                from search.behaviour.log import open_log_store

                open_log_store(log).close()  # the tables are made once, and a log that cannot be kept fails here
            os.environ[SETTINGS_ENV] = json.dumps(settings)
            click.echo(f"vitrina: {workers} workers loading {index_dir}; page at {url}", err=True)
            uvicorn.run("vitrina.commands.serve:app_from_env", factory=True, host=host, port=port, workers=workers,
                        log_level=log_level, timeout_graceful_shutdown=5)
            return
        app, engine = open_app(settings)
    except VitrinaError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        counts = engine.store.counts()
        click.echo(f"vitrina: {counts['products']} products from {index_dir} with {engine.encoder.identity.describe()}; "
                   f"page at {url}, API at {url}docs", err=True)
        if app.state.search_log is not None:
            click.echo(f"vitrina: logging searches and events to {app.state.search_log.where}", err=True)
        uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
    finally:
        if app.state.search_log is not None:
            app.state.search_log.close()  # writes what is still queued
        engine.close()


if __name__ == "__main__":  # python -m vitrina.commands.serve --index DIR (before `serve` is registered)
    serve_command()
