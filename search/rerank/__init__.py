"""The fusion classifier: features (pure), the model, and its storage in the index folder.

Training it needs the engine (``search.rerank.train``), which in turn loads stored classifiers from here,
so this package's ``__init__`` exports only what the engine may import.
"""

from search.rerank.config import RerankerConfig
from search.rerank.storage import FusionReranker, load_reranker, read_reranker, save_reranker

__all__ = ["FusionReranker", "RerankerConfig", "load_reranker", "read_reranker", "save_reranker"]
