"""The index folder: SQLite metadata (the source of truth) and FAISS vector files, read and written.

``schema`` (tables, format version), ``database`` (connections, vector blobs), ``records`` (what is stored),
``reader`` (``IndexStore``: open, snapshot, reads), ``writer`` (``IndexWriter``: the commit protocol),
``vectors`` (FAISS files and checksums), ``index_types`` (choosing and tuning the FAISS index type).
"""

from indexer.store.reader import IndexStore
from indexer.store.records import MODALITIES, CommitInfo, EmbeddedImage, EmbeddedProduct
from indexer.store.writer import IndexWriter

__all__ = ["MODALITIES", "CommitInfo", "EmbeddedImage", "EmbeddedProduct", "IndexStore", "IndexWriter"]
