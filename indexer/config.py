"""Typed, frozen configuration with every default in one place.

Nothing here reads environment variables or files on import: the CLI builds these
objects from its options and passes them down.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

from indexer.media.addresses import IPAddress, IPNetwork, embedded_ipv4, normal_host

#: "auto": Flat while small, HNSW while it fits ``max_memory``, IVF-PQ beyond (re-chosen as the index grows).
AUTO_INDEX_TYPE = "auto"
DEFAULT_INDEX_TYPE = AUTO_INDEX_TYPE
#: Runtimes that can run a model's image tower.
RUNTIMES = ("torch", "onnx", "onnx-int8")
#: Fraction of a product's fused score that comes from its photos (the rest from its text).
DEFAULT_IMAGE_SHARE = 0.5


@dataclass(frozen=True, kw_only=True)
class FetchPolicy:
    """How image URLs are fetched; every default is here.

    ``allow_hosts`` (exact names, case-insensitive) and ``allow_networks`` (CIDR strings or
    networks) permit what the address check would refuse, e.g. an intranet image server or
    ``127.0.0.1`` in tests.  Redirect targets are checked against the same allowlist.
    """

    connect_timeout: float = 5.0
    #: Longest wait for any single read or write once connected.
    read_timeout: float = 10.0
    #: Wall-clock limit of one URL: connect, redirects, retries and reading together.
    deadline: float = 30.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 3
    #: Extra attempts after a connection error, a timeout or HTTP 429/502/503/504.
    retries: int = 2
    backoff_base: float = 0.5
    backoff_cap: float = 4.0
    #: A Retry-After up to this many seconds is waited for; a longer one ends the retries.
    max_retry_after: float = 5.0
    #: Host names let through whatever they resolve to (exact, case-insensitive; no wildcards).
    allow_hosts: frozenset[str] = frozenset()
    #: CIDR ranges let through; strings are parsed into networks on construction.
    allow_networks: tuple[str | IPNetwork, ...] = ()
    user_agent: str = "vitrina/0.1 (+image fetch)"
    #: Extra CA bundle (PEM) trusted for https, e.g. an intranet CA; None = system store only.
    ca_file: str | None = None
    #: Most URLs fetched at once by ``fetch_many``.
    max_concurrency: int = 8

    def __post_init__(self) -> None:
        positive = ("connect_timeout", "read_timeout", "deadline", "backoff_cap", "max_bytes", "max_concurrency")
        for name in (*positive, "backoff_base", "max_retry_after", "max_redirects", "retries"):
            value = getattr(self, name)
            if not (value > 0 if name in positive else value >= 0):
                least = "positive" if name in positive else "zero or more"
                raise ValueError(f"FetchPolicy.{name} must be {least}, not {value!r}")
        if any(c in self.user_agent for c in "\r\n") or not self.user_agent.isascii():
            raise ValueError("FetchPolicy.user_agent must be one line of ASCII")
        hosts = [self.allow_hosts] if isinstance(self.allow_hosts, str) else self.allow_hosts
        networks = [self.allow_networks] if isinstance(self.allow_networks, str) else self.allow_networks
        object.__setattr__(self, "allow_hosts", frozenset(normal_host(h) for h in hosts))
        object.__setattr__(self, "allow_networks", tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def permits(self, address: IPAddress) -> bool:
        """Whether ``address`` (or the IPv4 address inside it) lies in an allowlisted network."""
        candidates = [address] + ([inner] if (inner := embedded_ipv4(address)) else [])
        networks = cast("tuple[IPNetwork, ...]", self.allow_networks)  # __post_init__ parsed every entry
        return any(a in n for a in candidates for n in networks if a.version == n.version)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Which open_clip model to load.

    ``name`` is an open_clip architecture (``ViT-B-32``), an ``hf-hub:org/repo`` name,
    or a path to a model folder (open_clip config JSON + weights).  ``pretrained`` is a
    pretrained tag (``laion2b_s34b_b79k``) or a local checkpoint file.  ``None`` for both
    means the bundled demo model when it exists.
    """

    name: str | None = None
    pretrained: str | None = None
    device: str = "cpu"
    #: torch intra-op threads; ``None`` leaves torch's default.
    threads: int | None = None
    #: What runs the image tower: "torch" (eager), "onnx" (ONNX Runtime, exported once and cached in
    #: ``onnx_cache``) or "onnx-int8" (the same with int8 weights: faster, cosine ~0.995 to fp32); the
    #: ONNX ones fall back to torch with a logged warning when onnxruntime is not installed.
    runtime: str = "torch"
    onnx_cache: str | None = None  # None: ~/.cache/vitrina/onnx

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")


@dataclass(frozen=True, kw_only=True)
class ImageLimits:
    """Guards applied to every image, at indexing and at query time."""

    max_pixels: int = 40_000_000
    max_bytes: int = 20 * 1024 * 1024
    allowed_formats: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO"})
    #: Longer side over shorter side: a 100000x1 PNG is 370 bytes, but resizing its short side to the
    #: model's input made a 22-gigapixel strip (10 s, 2.7 GB).  Panoramas stay well under 50:1.
    max_aspect_ratio: float = 50.0
    #: Bytes the decoded pixels may take (width x height x bytes per pixel, before conversion to RGB).
    max_decoded_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class VectorIndexConfig:
    """How FAISS indexes are chosen, built and tuned at commit time (``index_type="auto"``)."""

    #: Vectors scanned by an exact search while it stays cheap (~5 ms single-thread here): 32k at 512-d.
    flat_scan_bytes: int = 64 * 1024 * 1024
    #: HNSW links per node (M); level 0 has 2*M.
    hnsw_m: int = 32
    #: HNSW efConstruction: FAISS's 40 stalled at recall@10 0.936 on 1M clustered vectors, 100 reached 0.954.
    hnsw_ef_construction: int = 100
    #: Recall@10 against exact search that efSearch / nprobe (and the re-scoring depth) are tuned to.
    target_recall: float = 0.95
    #: Sampled stored vectors used as queries when tuning.
    tuning_queries: int = 200
    #: Hits re-scored exactly per query for compressed codes (PQ, SQ), tried in order.
    rescore_depths: tuple[int, ...] = (100, 300, 1000)
    #: The largest nprobe tried when candidates are re-scored (re-scoring more beats probing everything).
    max_nprobe: int = 64
    #: efSearch / nprobe values tried when tuning, in order.
    ef_ladder: tuple[int, ...] = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
    nprobe_ladder: tuple[int, ...] = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512, 1024)
    #: Segments of fewer vectors are exact (Flat) scans whatever the index type (``indexer.store.segments``).
    small_segment: int = 2048
    #: For "auto": from a segment of this many vectors on, whether an exact scan beats HNSW is measured on this
    #: machine (once, kept in the index) instead of judged by ``flat_scan_bytes``; 0 turns measuring off.
    measure_from: int = 4096
    #: Segments per tier before the tier is merged into one (Lucene's segments per tier).
    merge_factor: int = 10
    #: Live vectors below which every segment is in the lowest tier.
    merge_floor: int = 1000
    #: The most live vectors a commit merges; larger merges are left to ``vitrina optimize``.
    max_merge_vectors: int = 100_000
    #: A segment whose share of dead vectors (deleted or replaced products) reaches this is rewritten.
    expunge_dead_fraction: float = 0.5
    #: A segment file a commit stops naming (merged, emptied) is deleted only once it has been out of use for
    #: this many commits and this many seconds: readers elsewhere (serving replicas) may still be loading it.
    keep_generations: int = 3
    keep_seconds: float = 60.0


@dataclass(frozen=True, kw_only=True)
class IndexConfig:
    """How ``vitrina index`` builds an index folder."""

    #: "auto" or any FAISS factory string ("Flat", "HNSW32", "IVF1024,PQ32"...).
    index_type: str = DEFAULT_INDEX_TYPE
    #: Memory budget of both FAISS indexes together for ``index_type="auto"`` (bytes; None: no limit).
    max_memory: int | None = None
    batch_size: int = 32
    #: Commit (make searchable, crash-safe) every this many products; 0 = only at the end.
    commit_every: int = 1000
    #: Accept local image paths outside the catalog's folder (``../``, absolute, symlinks out).
    allow_outside_root: bool = False
    #: How image URLs are fetched: timeouts, byte cap, redirects, retries, address allowlist.
    fetch: FetchPolicy = field(default_factory=FetchPolicy)
    images: ImageLimits = field(default_factory=ImageLimits)
    vectors: VectorIndexConfig = field(default_factory=VectorIndexConfig)
    #: Batches the reading worker prepares ahead of the model.
    prefetch_depth: int = 2
    #: Where the metadata lives: None = the SQLite file in the index folder; a ``postgresql+psycopg://`` URL =
    #: that PostgreSQL database (the FAISS segment files stay in the folder).
    database: str | None = None


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """Defaults of a search; each may be overridden per query."""

    #: How much a product's photos count against its text (0..1), for text and product terms.  Every
    #: part is a z-score against the index's own reference sample first (``search.calibration``), so the
    #: share means what it says whatever the model's modality gap.
    image_share: float = DEFAULT_IMAGE_SHARE
    #: The same for photo terms (None: ``image_share``), weighed by how well a photo finds its own product
    #: through each side of the index, measured per commit (``calibration.informed_share``): a side that
    #: cannot tell products apart counts less.  A query's explicit ``image_share`` sets every term's share.
    photo_image_share: float | None = 0.8
    k: int = 10
    max_k: int = 1000
    #: ANN candidates fetched per modality index, as a multiple of ``k + offset``.
    candidate_factor: int = 4
    min_candidates: int = 100
    #: Weight of the BM25 word match, as a z-score over the catalog capped at 8, in the fused sum (0..1).
    lexical_weight: float = 0.5
    #: Weight of field evidence (query words naming a category, brand or attribute value) in the fused sum,
    #: in z units: a product of the named kind gains ``field_weight * prior`` (``search.field_match``).
    field_weight: float = 5.0
    #: How much each field counts per named value; fields not listed: 1.0 for category-like names
    #: (category, type, kind, product_type, department), 0.5 for the rest.
    field_priors: Mapping[str, float] = field(default_factory=dict)
    #: Photo + words ("this but in red"): the photo's field values are inferred from a vote of its nearest
    #: candidates and the model's zero-shot classifier (softmax of ``zero_shot_scale`` x cosine to each value's
    #: name), and count ``photo_evidence`` as much as what the words name outright.
    photo_neighbours: int = 10
    zero_shot_scale: float = 100.0
    photo_evidence: float = 0.5
    #: Products in the reference sample every query's cosines are standardised against.
    reference_sample: int = 256
    #: Synonyms the catalog declares: phrase -> (field, value), e.g. {"settee": ("category", "sofa")}.
    synonyms: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    #: BM25 candidates fetched beside the ANN candidates for text terms.
    lexical_candidates: int = 100
    #: Words found in more products than this stay out of the BM25 query: scoring every match costs
    #: ~1 µs each (11 ms for "red shoes" over 20k products) and such common words rank little; the
    #: vectors still carry their meaning. None: no limit.
    lexical_max_docs: int | None = 2000
    #: How many of the best fused candidates a trained re-ranker re-scores.
    rerank_depth: int = 100
    #: HNSW efSearch / IVF nprobe at query time; None: the values tuned when the index was written
    #: (recall@10 >= 0.95 against exact search), else 128 / 16.
    ef_search: int | None = None
    nprobe: int | None = None
    max_text_chars: int = 2000
    #: A filter allowing at most this many products is searched exactly over their vectors (an approximate
    #: index with a very selective ID selector returns fewer than k hits).
    exact_scan_limit: int = 2048
    #: BM25 matches kept among the candidates a trained re-ranker sees, whatever their fused score.
    lexical_keep: int = 10
    #: OpenMP threads FAISS uses per query (set for the search call only, in its thread); one is fastest for
    #: single queries here.
    faiss_threads: int | None = 1
    #: A query's ``sort`` orders this many of its most relevant candidates by the field (``search.business``);
    #: deeper hits follow in relevance order.
    sort_depth: int = 100
    #: The catalog attribute holding stock levels: ``in_stock`` keeps the products whose value is > 0.
    stock_field: str = "stock"
    images: ImageLimits = field(default_factory=ImageLimits)
