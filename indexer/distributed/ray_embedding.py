"""``build_index_ray``: ``build_index`` with the reading, decoding and embedding done by a pool of Ray actors.

    report = build_index_ray("catalog.jsonl", "my-index", model=ModelConfig(name="ViT-B-32", pretrained="..."),
                             identity=encoder.identity, ray=RayOptions(address="auto", actors=3))

This process (the driver) parses the catalog, so bad rows are reported with their row numbers before Ray
starts, exactly as ``build_index`` reports them; Ray Data splits the valid products into batches of
``config.batch_size`` for an actor pool (``ActorPoolStrategy``, one CPU or ``gpus_per_actor`` GPUs each).
Each actor loads the model once, from the picklable ``ModelConfig``, with one torch thread, checks that it
is the driver's model (same weights fingerprint), and runs vitrina's own pipeline on its batches: the safe
reading and SSRF-guarded fetching, the content and embed hashes against the stored ones (``ray.put`` once),
decoding, the model.  It sends back only what changed: new and re-embedded products with their vectors,
field-only changes without vectors, and the problems of its rows; unchanged products are just counted.

The driver is the one writer: it stores the results in catalog order (Ray Data's ``preserve_order``) with
``store_batch`` (same commits every ``config.commit_every``, same report counts, same SQLite and FAISS ids as a
plain run), deletes what the catalog lost (``delete_missing``) and ends merged when ``build_index`` would.
Large IVF segments are filled by Ray tasks (``IvfShardBuilder``).  Precomputed vectors are not supported here.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from indexer.catalog import ProductRecord, catalog_format, iter_products
from indexer.config import IndexConfig, ModelConfig
from indexer.distributed import RayOptions, actor_count, connect, import_ray
from indexer.distributed.ivf_shards import IvfShardBuilder
from indexer.encoders.base import ModelIdentity
from indexer.encoders.loading import RANDOM_WEIGHTS, load_encoder
from indexer.errors import CatalogError, ModelError, VitrinaError
from indexer.pipeline import (IndexReport, Problem, _batches, _prepare_batch, _Prepared, embed_prepared, finish_run, held_problem,
                              row_error_recorder, store_batch)
from indexer.prefetch import prefetch
from indexer.stages import StageTimes
from indexer.store.reader import IndexStore
from indexer.store.records import EmbeddedProduct
from indexer.store.writer import IndexWriter

#: Batches (of ``config.batch_size`` products) one call of an actor gets: its reading of the next batch
#: overlaps the model on the current one, as ``build_index``'s worker thread does.
BATCHES_PER_CALL = 4


@dataclass
class BatchResult:
    """What an actor sends back for one batch: the changes, counts and problems; no unchanged product."""

    ids: list[str]
    unchanged: int
    products: list[EmbeddedProduct]
    in_place: list[tuple[ProductRecord, str | None]]  # field-only changes: (record, new content hash), no vectors
    held: list[tuple[int, str, str, str]]  # (row, id, image, reason): stored products kept as stored
    problems: list[Problem]
    failed: int
    stages: dict[str, float] = field(default_factory=dict)


def actor_model(model: ModelConfig, *, gpus_per_actor: float) -> ModelConfig:
    """The ``ModelConfig`` an actor loads: local paths made absolute (actors run elsewhere), one torch thread,
    the GPU Ray gives it when it has one, else the CPU."""
    name, pretrained = model.name, model.pretrained
    if name and Path(name).expanduser().is_dir():
        name = str(Path(name).expanduser().resolve())
    if pretrained and Path(pretrained).expanduser().is_file():
        pretrained = str(Path(pretrained).expanduser().resolve())
    return replace(model, name=name, pretrained=pretrained, threads=1, device="cuda" if gpus_per_actor > 0 else "cpu")


class EmbedActor:
    """One actor of the pool: a model, loaded once, and the stored hashes; called with pickled batches."""

    def __init__(self, *, model: ModelConfig, identity: ModelIdentity, config: IndexConfig, stored: list[Any]):
        import torch  # in the actor's process only

        torch.set_num_threads(1)
        self.config = config
        self.stored: dict[str, tuple[str | None, str | None]] = import_ray().get(stored[0])
        #: Raised by the first call rather than here: Ray passes a call's exception to the driver as an object,
        #: an actor's failed start only as text.
        self.error: VitrinaError | None = None
        try:
            self.encoder = load_encoder(model, batch_size=config.batch_size)
            if self.encoder.identity.fingerprint != identity.fingerprint:
                raise ModelError(f"the model {model.name} loaded by a Ray actor is not the driver's (other weights on "
                                 "its node?): their fingerprints differ")
        except VitrinaError as exc:
            self.error = exc

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        if self.error is not None:
            raise self.error
        stages = StageTimes()
        chunks: list[list[ProductRecord]] = [pickle.loads(blob) for blob in batch["batch"]]

        def prepare(records: list[ProductRecord]) -> _Prepared:
            return _prepare_batch(records, encoder=self.encoder, config=self.config, stored=self.stored, stages=stages)

        sent: dict[str, float] = {}
        with closing(prefetch(chunks, prepare, workers=1, depth=self.config.prefetch_depth)) as prepared_batches:
            for prepared in prepared_batches:
                result = self.embed(prepared, stages)
                now = stages.snapshot()
                result.stages = {k: v - sent.get(k, 0.0) for k, v in now.items()}
                sent = now
                yield {"result": np.array([pickle.dumps(result)], dtype=object)}

    def embed(self, prepared: _Prepared, stages: StageTimes) -> BatchResult:
        local = IndexReport(catalog="", index="")
        products = embed_prepared(prepared, encoder=self.encoder, report=local, stages=stages)
        held = [(item.record.row, item.record.id, location, reason)
                for item in prepared.held for location, reason in item.failures]
        return BatchResult(ids=[r.id for r in prepared.records], unchanged=prepared.unchanged + len(prepared.held),
                           products=products, in_place=[(item.record, item.content_hash) for item in prepared.field_only],
                           held=held, problems=local.problems, failed=local.failed)


def build_index_ray(
    catalog: str | Path,
    folder: str | Path,
    *,
    model: ModelConfig,
    identity: ModelIdentity,
    ray: RayOptions = RayOptions(),
    config: IndexConfig = IndexConfig(),
    model_spec: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    delete_missing: bool = False,
    stages: StageTimes | None = None,
) -> IndexReport:
    """``build_index`` on Ray (see the module docstring): the same index, report and problems.

    ``identity`` is the model's (``load_encoder(model).identity``, loaded once here to check it before Ray
    starts); every actor loads ``model`` itself and must find the same weights.  ``ActorsError`` when
    ``ray.actors`` do not fit the cluster; ``RayNotInstalledError`` without Ray."""
    started = time.perf_counter()
    stages = stages if stages is not None else StageTimes()
    report = IndexReport(catalog=str(catalog), index=str(folder))
    if model.pretrained == RANDOM_WEIGHTS:
        raise ModelError("--pretrained random draws other weights in every Ray actor: save one draw as a model folder "
                         "(indexer.encoders.model_folder.save_model_folder) and pass --model DIR")
    if not Path(catalog).is_file():
        raise CatalogError(f"{catalog}: catalog file not found")
    catalog_format(Path(catalog))
    seen: set[str] = set()
    on_row_error = row_error_recorder(report, seen, progress)
    with stages.time("read"):
        records = list(iter_products(catalog, on_error=on_row_error, allow_outside_root=config.allow_outside_root))
    ray_module = import_ray()
    started_ray = connect(ray.address)
    try:
        resources = ray_module.cluster_resources()
        actors = actor_count(ray.actors, cpus=float(resources.get("CPU", 0)), gpus=float(resources.get("GPU", 0)),
                             gpus_per_actor=ray.gpus_per_actor)
        store = IndexStore.create(
            folder, identity=identity, index_type=config.index_type, max_memory=config.max_memory,
            model_spec=model_spec or {"name": identity.name, "pretrained": identity.pretrained}, database=config.database)
        try:
            with IndexWriter(store, config=config.vectors, segment_builder=IvfShardBuilder(shards=actors)) as writer:
                stored = store.content_hashes()
                results = _embedded(records, model=actor_model(model, gpus_per_actor=ray.gpus_per_actor), identity=identity,
                                    config=config, stored=stored, actors=actors, gpus_per_actor=ray.gpus_per_actor)
                with closing(results):
                    _store_all(results, writer, store, stored=stored, seen=seen, report=report, config=config,
                               delete_missing=delete_missing, progress=progress, stages=stages)
        finally:
            store.close()
    finally:
        if started_ray:
            ray_module.shutdown()
    report.problems.sort(key=lambda p: p.row)
    report.seconds = round(time.perf_counter() - started, 3)
    report.stages = stages.to_json()
    return report


def _store_all(results: Iterator[BatchResult], writer: IndexWriter, store: IndexStore, *,
               stored: dict[str, tuple[str | None, str | None]], seen: set[str], report: IndexReport, config: IndexConfig,
               delete_missing: bool, progress: Callable[[int], None] | None, stages: StageTimes) -> None:
    """The driver's part: store the actors' results as they come, then end as ``build_index`` ends."""
    changes = 0
    while True:
        with stages.time("wait"):
            result = next(results, None)
        if result is None:
            break
        _count(report, result, stages)
        seen.update(result.ids)
        with stages.time("store"):
            changes = store_batch(writer, result.products, result.in_place, stored=stored, report=report,
                                  changes=changes, commit_every=config.commit_every)
        if progress:
            progress(len(result.ids))
    with stages.time("store"):
        finish_run(writer, report, stored=stored, seen=seen, changes=changes, delete_missing=delete_missing)


def _count(report: IndexReport, result: BatchResult, stages: StageTimes) -> None:
    report.unchanged += result.unchanged
    report.problems.extend(held_problem(row, product_id, location, reason)
                           for row, product_id, location, reason in result.held)
    report.problems.extend(result.problems)
    report.failed += result.failed
    for stage, seconds in result.stages.items():  # the actors' seconds, summed over actors
        stages.add(stage, seconds)


def _embedded(records: list[ProductRecord], *, model: ModelConfig, identity: ModelIdentity, config: IndexConfig,
              stored: dict[str, tuple[str | None, str | None]], actors: int, gpus_per_actor: float) -> Generator[BatchResult, None, None]:
    """The actors' results, batch by batch, in catalog order."""
    if not records:
        return
    ray = import_ray()
    _quiet_ray_data()
    context = ray.data.DataContext.get_current()
    before = context.execution_options.preserve_order, context.enable_progress_bars
    context.execution_options.preserve_order = True  # catalog order: the ids and commits of a plain run
    context.enable_progress_bars = False  # the caller shows progress
    try:
        items = [{"batch": pickle.dumps(batch)} for batch in _batches(records, config.batch_size)]
        blocks = max(-(-len(items) // BATCHES_PER_CALL), min(len(items), actors))  # a block for every actor
        actors = min(actors, blocks)  # no actor started for nothing (a small catalog)
        extra: dict[str, Any] = {"num_gpus": gpus_per_actor} if gpus_per_actor > 0 else {}
        embedded = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            EmbedActor, fn_constructor_kwargs={"model": model, "identity": identity, "config": config,
                                               "stored": [ray.put(stored)]},
            batch_size=BATCHES_PER_CALL, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1, **extra)
        for row in embedded.iter_rows():
            yield pickle.loads(row["result"])
    except ray.exceptions.RayError as exc:  # an actor's own error (a model that does not load...) as itself
        cause = _vitrina_cause(exc, ray.exceptions.RayError)
        if cause is None:
            raise
        raise cause from None
    finally:  # the process's other datasets keep their settings
        context.execution_options.preserve_order, context.enable_progress_bars = before


def _vitrina_cause(exc: BaseException, wrapper: type[BaseException]) -> VitrinaError | None:
    """The ``VitrinaError`` a Ray error (``wrapper``) carries as its task's cause, if any.  (Ray's
    ``RayTaskError(ModelError)`` is a ModelError too, but its text is a whole traceback.)"""
    todo, seen = [exc], set()
    while todo:
        item = todo.pop()
        if isinstance(item, VitrinaError) and not isinstance(item, wrapper):
            return item
        if id(item) in seen:
            continue
        seen.add(id(item))
        todo += [e for e in (getattr(item, "cause", None), item.__cause__, item.__context__) if isinstance(e, BaseException)]
    return None


class _RoutineRayDataLines(logging.Filter):
    """Drops Ray Data's routine console lines (execution started, plan, finished; progress bars off): the caller
    shows its own progress.  Its warnings and errors still print, and every line stays in its session log."""

    ROUTINE = ("Starting execution of Dataset", "Execution plan of Dataset", "Progress bars disabled")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith(self.ROUTINE) or record.levelno <= logging.INFO and "execution finished" in message)


def _quiet_ray_data() -> None:
    for handler in logging.getLogger("ray.data").handlers:  # console ones: the session log keeps every line
        if isinstance(handler, logging.StreamHandler) and not any(isinstance(f, _RoutineRayDataLines) for f in handler.filters):
            handler.addFilter(_RoutineRayDataLines())
