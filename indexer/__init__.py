"""vitrina's write path: read a catalog, load its images safely, embed them, store an index folder.

    from indexer import IndexConfig, IndexStore, ModelConfig, build_index, load_encoder
    encoder = load_encoder(ModelConfig())                  # the bundled demo model
    report = build_index("catalog.jsonl", "my-index", encoder=encoder, config=IndexConfig())
    # precomputed vectors: build_index(..., vectors=read_vectors_file("vectors.npz")), or index_vectors(...)
    with IndexStore.open("my-index") as store:
        print(store.counts())

Subpackages: ``media`` (safe image decoding, SSRF-guarded fetching), ``encoders`` (open_clip, ONNX),
``store`` (the on-disk contract: SQLite + FAISS), ``train`` (training a model on a catalog).
"""

from indexer.catalog import ProductRecord, RowError, iter_products
from indexer.config import FetchPolicy, ImageLimits, IndexConfig, ModelConfig, SearchConfig, VectorIndexConfig
from indexer.encoders import Encoder, ModelIdentity, OpenClipEncoder, load_encoder
from indexer.errors import (CatalogError, ImageError, ImageRefusedError, ImageTooLargeError, IndexFormatError,
                            IndexLockedError, ModelError, QueryError, VectorsFileError, VitrinaError)
from indexer.pipeline import IndexReport, Problem, build_index
from indexer.store import CommitInfo, EmbeddedImage, EmbeddedProduct, IndexStore, IndexWriter
from indexer.vectors_file import VectorsFile, read_vectors_file
from indexer.vectors_index import index_vectors

__all__ = [
    "CatalogError",
    "CommitInfo",
    "EmbeddedImage",
    "EmbeddedProduct",
    "Encoder",
    "FetchPolicy",
    "ImageError",
    "ImageLimits",
    "ImageRefusedError",
    "ImageTooLargeError",
    "IndexConfig",
    "IndexFormatError",
    "IndexLockedError",
    "IndexReport",
    "IndexStore",
    "IndexWriter",
    "ModelConfig",
    "ModelError",
    "ModelIdentity",
    "OpenClipEncoder",
    "Problem",
    "ProductRecord",
    "QueryError",
    "RowError",
    "SearchConfig",
    "VectorIndexConfig",
    "VectorsFile",
    "VectorsFileError",
    "VitrinaError",
    "build_index",
    "index_vectors",
    "iter_products",
    "load_encoder",
    "read_vectors_file",
]
