"""``SearchEngine``: encode the query, fuse its terms, gather candidates, score, return hits."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from indexer.config import ModelConfig, SearchConfig
from indexer.encoders.base import Encoder
from indexer.encoders.loading import load_encoder
from indexer.errors import IndexFormatError, ModelError, QueryError
from indexer.media.images import load_image
from indexer.store.reader import IndexStore

from search import calibration
from search.business import Business, business_info
from search.commit_follower import CommitFollower
from search.filters import compile_where
from search.candidates import Candidates, QueryInfo
from search.field_table import FieldTable
from search.query import Term, build_terms, fill_vector_terms, query_words
from search.composer import Composer, load_composer
from search.rerank.storage import load_reranker
from search.gathering import gather_candidates
from search.results import SearchResult
from search.scoring import QueryFields, Weights, read_fields
from search.text_cache import TextCache
from search.vector_view import VectorView


class Reranker(Protocol):
    """Re-scores the top candidates of a query (``search.rerank.storage`` trains and loads one)."""

    def rerank(self, candidates: Candidates) -> Candidates: ...


class SearchEngine:
    """Text, image and combined search over one index folder.

    >>> engine = SearchEngine.open("my-index")
    >>> engine.search("red striped t-shirt", k=5)
    >>> engine.search(terms=[("red dress", 1.0), (Path("photo.jpg"), 0.5), ("sleeveless", -0.3)])
    >>> engine.search(vector=query_vector)  # a precomputed vector of the index's model dimension
    """

    def __init__(self, store: IndexStore, encoder: Encoder, *, config: SearchConfig = SearchConfig(),
                 reranker: Reranker | None = None, composer: Composer | None = None):
        if not store.identity.same_model(encoder.identity):
            raise ModelError(
                f"{store.folder} was built with {store.identity.describe()}; "
                f"the query model is {encoder.identity.describe()}. Search it with the model it was built with"
            )
        self.store = store
        self.encoder = encoder
        self.config = config
        self._lock = threading.RLock()
        self._text_cache = TextCache()
        self._follower: CommitFollower | None = None
        self._load_indexes()
        #: A trained re-ranker (``search.rerank.storage``) or None; set by ``open`` when the index has one.
        self.reranker: Reranker | None = reranker
        #: A trained photo + words combiner (``search.composer``) or None; set by ``open`` when the index has one.
        self.composer: Composer | None = composer

    @classmethod
    def open(
        cls,
        folder: str | Path,
        *,
        encoder: Encoder | None = None,
        model: ModelConfig | None = None,
        config: SearchConfig = SearchConfig(),
        rerank: bool = True,
        compose: bool = True,
        database: str | None = None,
    ) -> SearchEngine:
        """Open ``folder``; the model is the one the index was built with unless given.

        The index's trained re-ranker (``vitrina train-reranker``) and photo + words combiner
        (``vitrina train-composer``) are loaded when present and ``rerank`` / ``compose`` are true; ones
        trained for another index or model are refused.  ``database``: the PostgreSQL URL of the index's
        metadata when the folder does not name it (or to give a password).
        """
        store = IndexStore.open(folder, database=database)
        try:
            if encoder is None:
                spec = store.model_spec
                model = model or ModelConfig(name=spec.get("name"), pretrained=spec.get("pretrained"))
                encoder = load_encoder(model)
            reranker = load_reranker(store) if rerank else None
            composer = load_composer(store) if compose else None
            return cls(store, encoder, config=config, reranker=reranker, composer=composer)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        if self._follower is not None:
            self._follower.stop()
        self.store.close()

    def follow(self, interval: float = 1.0) -> CommitFollower:
        """Load each new commit in a background thread, checked every ``interval`` seconds (until ``close``)."""
        self._follower = self._follower or CommitFollower(self, interval=interval).start()
        return self._follower

    @property
    def generation(self) -> int:
        """The generation of the commit searches are answered from."""
        return self._view.generation

    def __enter__(self) -> SearchEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load_indexes(self) -> None:
        with self.store.snapshot():
            self._view = self._new_view(None)

    def _current_view(self) -> VectorView:
        """The view of the commit this thread's snapshot sees, loaded when a writer committed since (only the new
        segments are read).  While one query loads it, the others answer from the last view instead of waiting:
        their candidates are cut to what both the view and their snapshot hold (``gathering``)."""
        commit = self.store.read_commit()
        generation = commit.get("generation", 0)
        view = self._view
        if view.generation == generation:
            return view
        if not self._lock.acquire(blocking=False):
            return view
        try:
            if self._view.generation == generation:
                return self._view
            view = self._new_view(commit, previous=self._view)
            if view.generation > self._view.generation:
                self._view = view
            return view
        finally:
            self._lock.release()

    def refresh(self) -> int:
        """Load the live commit now if a writer made one since (``follow`` does it every second); its generation."""
        with self.store.snapshot(), self._lock:
            commit = self.store.read_commit()
            if int(commit.get("generation", 0)) != self._view.generation:
                self._view = self._new_view(commit, previous=self._view)
            return self._view.generation

    def _new_view(self, commit: dict[str, Any] | None, previous: VectorView | None = None) -> VectorView:
        return VectorView(self.store, commit, previous=previous, field_priors=self.config.field_priors,
                          synonyms=self.config.synonyms)

    @contextmanager
    def _consistent(self) -> Iterator[VectorView]:
        """A snapshot of the database and the matching FAISS view: one answer, one commit.

        A writer may delete an old generation's files between our snapshot and our load;
        then a fresh snapshot (which sees the newer commit) is taken.
        """
        for attempt in range(3):
            with self.store.snapshot():
                try:
                    view = self._current_view()
                except IndexFormatError:
                    if attempt == 2:
                        raise
                    continue
                yield view
                return

    # -- public API ------------------------------------------------------------------
    def search(
        self,
        text: str | None = None,
        image: Any = None,
        *,
        weights: Mapping[str, float] | None = None,
        terms: Sequence[Any] | None = None,
        where: Mapping[str, Any] | None = None,
        k: int | None = None,
        offset: int = 0,
        image_share: float | None = None,
        lexical_weight: float | None = None,
        field_weight: float | None = None,
        rerank: bool = True,
        exclude: Sequence[str] = (),
        vector: Any = None,
        sort: str | None = None,
        boost: Mapping[str, float] | None = None,
        in_stock: bool | None = None,
    ) -> SearchResult:
        """Products best matching the weighted terms, best first.

        ``text``, ``image`` (a path, bytes or PIL image) and ``vector`` (a precomputed query vector: a 1-D list
        or array of the index model's dimension) are weighted by ``weights`` (``{"text": 1.0, "image": 1.0,
        "vector": 1.0}`` by default); ``terms`` adds ``(value, weight)`` pairs where value is a str (text), an
        image, a numpy vector, ``{"product": id}`` or ``{"vector": [...]}``.
        ``image_share`` is how much a product's photos count against its text (0..1; default
        ``config.image_share`` for text terms, ``config.photo_image_share`` for photos);
        ``lexical_weight`` how much the BM25 word match adds (0 turns word search off);
        ``field_weight`` how much words naming a catalog field value (a category, a colour) add (0: off).
        Every part is calibrated first (``search.calibration``); the result reports the weights used.
        ``rerank=False`` skips the index's trained re-ranker (when it has one).
        Business signals (``search.business``): ``sort`` (``"price"``, ``"-popularity"``) orders the
        ``config.sort_depth`` most relevant candidates by a numeric field; ``boost`` (``{"margin": 0.5}``) adds
        weight x the field's z-score to the fused score; ``in_stock=True`` keeps products with ``stock`` > 0.
        """
        started = time.perf_counter()
        query_terms = build_terms(text=text, image=image, weights=weights, terms=terms, vector=vector)
        k, offset, share = self._check_params(k, offset, image_share)
        lexical = _weight("lexical_weight", self.config.lexical_weight if lexical_weight is None else lexical_weight, 1.0)
        field_w = _weight("field_weight", self.config.field_weight if field_weight is None else field_weight, 100.0)
        info = QueryInfo.from_terms(query_terms, words=query_words(query_terms) if lexical > 0 else [],
                                    image_share=share, lexical_weight=lexical)
        reranker = self.reranker if rerank else None
        rerank_depth = self._rerank_depth(reranker)
        signals = Business.parse(sort, boost, in_stock, stock_field=self.config.stock_field,
                                 sort_depth=self.config.sort_depth)
        depth = max(offset + k, rerank_depth, signals.depth)
        timings: dict[str, float] = {}
        t = time.perf_counter()
        vectors = self._term_vectors(query_terms)  # before the snapshot: a read transaction is not held while encoding
        timings["encode"] = _ms(t)
        with self._consistent() as view:
            clauses = compile_where(where, attribute_fields=view.attribute_fields) + signals.clauses(self.store, view)
            self._product_terms(query_terms, vectors)
            photos = any(t.kind == "image" for t in query_terms)  # the photo calibration only when a photo is asked
            photo_share = share if image_share is not None or not photos else self._photo_share(view)
            shares = tuple(photo_share if t.kind == "image" else share for t in query_terms)
            table = view.fields.get() if field_w > 0 else None
            fields = read_fields(query_terms, info.words, table.vocabulary) if table is not None else \
                QueryFields(bm25_words=info.words)
            vectors, term_weights, shares = self._composed(query_terms, vectors, shares)
            used = Weights(term_weights=term_weights, image_shares=shares,
                           lexical_weight=lexical, field_weight=field_w,
                           field_priors=dict(table.vocabulary.priors) if table is not None else {})
            candidates = gather_candidates(
                self.store, self.config, view, query_terms, vectors, clauses, info=info, fields=fields, weights=used,
                table=table, depth=depth, exclude=exclude, timings=timings, rerank_depth=rerank_depth,
                keep_lexical=self.config.lexical_keep if reranker is not None else 0,
                product_pks=self._product_pks(query_terms),
                value_vectors=None if table is None else lambda: self._value_vectors(view, table),
                boost=signals.booster(self.store))
        if reranker is not None and len(candidates):
            t = time.perf_counter()
            candidates = _rerank_top(reranker, candidates)
            timings["rerank"] = _ms(t)
        candidates = signals.sorted(candidates)
        page = candidates.take(np.arange(offset, min(offset + k, len(candidates))))
        timings["total"] = _ms(started)
        return SearchResult(hits=signals.hits(page), timings=timings, candidates=candidates.extra.get("scored", len(candidates)),
                            weights=used.to_json(), fields=fields.to_json(), generation=view.generation)

    def similar(self, product_id: str, k: int | None = None, *, where: Mapping[str, Any] | None = None,
                image_share: float | None = None, offset: int = 0, rerank: bool = True, sort: str | None = None,
                boost: Mapping[str, float] | None = None, in_stock: bool | None = None) -> SearchResult:
        """More like this: products nearest to ``product_id``, never the product itself."""
        return self.search(terms=[{"product": product_id}], where=where, k=k, offset=offset, image_share=image_share,
                           exclude=[product_id], rerank=rerank, sort=sort, boost=boost, in_stock=in_stock)

    def product(self, product_id: str) -> dict[str, Any]:
        """The stored metadata of one product (read in one snapshot); ``QueryError`` if unknown."""
        with self.store.snapshot():
            pks = self.store.product_pks([product_id])
            if product_id not in pks:
                raise QueryError(f"unknown product id {product_id!r}")
            return self.store.products([pks[product_id]])[pks[product_id]]

    def info(self) -> dict[str, Any]:
        return {
            "folder": str(self.store.folder),
            "model": self.store.identity.to_json(),
            "index_type": self.store.index_type,
            "vector_indexes": {m: self.store.factory(m, commit=self._view.commit) for m in ("text", "image")},
            "counts": self.store.counts(),
            "generation": self._view.generation,
            "filter_fields": ["id", "price", "category", "brand", *sorted(self._view.attribute_fields)],
            **business_info(self.store, self._view, self.config.stock_field),
        }

    # -- internals -------------------------------------------------------------------
    def _check_params(self, k: int | None, offset: int, image_share: float | None) -> tuple[int, int, float]:
        k = self.config.k if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise QueryError(f"k must be a positive integer, got {k!r}")
        if k > self.config.max_k:
            raise QueryError(f"k must be at most {self.config.max_k}, got {k}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise QueryError(f"offset must be a non-negative integer, got {offset!r}")
        if offset + k > 10 * self.config.max_k:
            raise QueryError(f"offset + k must be at most {10 * self.config.max_k}")
        share = self.config.image_share if image_share is None else image_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
            raise QueryError(f"image_share must be a number within [0, 1], got {share!r}")
        return k, offset, float(share)

    def _composed(self, terms: list[Term], vectors: np.ndarray,
                  shares: tuple[float, ...]) -> tuple[np.ndarray, tuple[float, ...], tuple[float, ...]]:
        """With a trained combiner and a query of a photo and words: one more term, the photo changed by the
        words, weighted as the photo and the words together (the original terms stay, at their weights)."""
        weights = tuple(t.weight for t in terms)
        photos = [i for i, t in enumerate(terms) if t.kind == "image" and t.weight > 0]
        texts = [i for i, t in enumerate(terms) if t.kind == "text" and t.weight > 0]
        if self.composer is None or not photos or not texts:
            return vectors, weights, shares
        photo = _unit(np.average(vectors[photos], axis=0, weights=[weights[i] for i in photos]))
        words = _unit(np.average(vectors[texts], axis=0, weights=[weights[i] for i in texts]))
        composed = self.composer.compose(photo, words)
        weight = float(sum(weights[i] for i in photos + texts))
        return np.vstack([vectors, composed]), (*weights, weight), (*shares, shares[photos[0]])

    def _photo_share(self, view: VectorView) -> float:
        """The default image share of photo terms: ``config.photo_image_share`` weighed by how well a photo
        finds its own product through each side, measured on this commit's reference sample."""
        if "separation" not in view.derived:
            reference = view.reference(self.config.reference_sample)
            view.derived["separation"] = calibration.photo_separation(
                reference["text"], reference["has_text"], reference["images"], reference["image_owner"])
        base = self.config.image_share if self.config.photo_image_share is None else self.config.photo_image_share
        return calibration.informed_share(base, view.derived["separation"])

    def _value_vectors(self, view: VectorView, table: FieldTable) -> dict[str, tuple[Sequence[str], np.ndarray]]:
        """The field values of this commit embedded once (per commit, not per query)."""
        if "value_vectors" not in view.derived:
            view.derived["value_vectors"] = _value_vectors_of(self.encoder, table)
        cached: dict[str, tuple[Sequence[str], np.ndarray]] = view.derived["value_vectors"]
        return cached

    def _term_vectors(self, terms: list[Term]) -> np.ndarray:
        """Each text, photo and vector term's unit vector, ``(t, d)`` (stored-product rows are filled in later)."""
        vectors = np.zeros((len(terms), self.encoder.dim), dtype=np.float32)  # the index's model dimension
        fill_vector_terms(terms, vectors)
        texts = [(i, t.value) for i, t in enumerate(terms) if t.kind == "text"]
        for i, t in enumerate(terms):
            if t.kind == "text" and len(t.value) > self.config.max_text_chars:
                raise QueryError(f"text term of {len(t.value)} characters; the limit is {self.config.max_text_chars}")
        if texts:
            vectors[[i for i, _ in texts]] = self._text_cache.get_many(self.encoder, [v for _, v in texts])
        images = [(i, load_image(t.value, limits=self.config.images)) for i, t in enumerate(terms) if t.kind == "image"]
        if images:
            vectors[[i for i, _ in images]] = self.encoder.encode_images([img for _, img in images])
        return vectors

    def _product_terms(self, terms: list[Term], vectors: np.ndarray) -> None:
        """Fill in the vectors of stored-product terms (inside the query's snapshot)."""
        for i, t in enumerate(terms):
            if t.kind == "product":
                vectors[i] = self._product_vector(t.value)

    def _product_pks(self, terms: list[Term]) -> list[int]:
        """The pks of the stored products that are positive terms of the query (more like this)."""
        ids = [str(t.value) for t in terms if t.kind == "product" and t.weight > 0]
        return list(self.store.product_pks(ids).values()) if ids else []

    def _rerank_depth(self, reranker: Reranker | None) -> int:
        """How many fused candidates the re-ranker re-scores: the depth it was trained on, whatever the page."""
        if reranker is None:
            return 0
        trained = getattr(reranker, "depth", None)
        return int(trained) if isinstance(trained, int) and trained > 0 else self.config.rerank_depth

    def _product_vector(self, product_id: str) -> np.ndarray:
        """A stored product as a query term: the mean of its image vectors plus its text vector."""
        pks = self.store.product_pks([product_id])
        if product_id not in pks:
            raise QueryError(f"unknown product id {product_id!r}")
        stored = self.store.vectors_of([pks[product_id]])
        parts = []
        if len(stored["images"]):
            parts.append(_unit(stored["images"].mean(axis=0)))
        if stored["has_text"][0]:
            parts.append(stored["text"][0])
        return _unit(np.sum(parts, axis=0))


def _value_vectors_of(encoder: Encoder, table: FieldTable) -> dict[str, tuple[Sequence[str], np.ndarray]]:
    """Every matchable field's values embedded as text (for zero-shot votes on what a photo shows)."""
    return {name: (values, encoder.encode_texts(list(values))) for name, values in table.vocabulary.fields.items()}


def _rerank_top(reranker: Reranker, candidates: Candidates) -> Candidates:
    """Re-rank the head (the top fused candidates to the re-ranker's depth, and the BM25 matches kept for it)
    and leave the rest after it in fused order, so every page of one query comes from one ranking."""
    head = int(candidates.extra.get("rerank_head", len(candidates)))
    if head >= len(candidates):
        return reranker.rerank(candidates)
    return reranker.rerank(candidates.take(np.arange(head))).concat(candidates.take(np.arange(head, len(candidates))))


def _weight(name: str, value: Any, most: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= most:
        raise QueryError(f"{name} must be a number within [0, {most:g}], got {value!r}")
    return float(value)

def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)
