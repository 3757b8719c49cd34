"""vitrina's read path: text, image and combined product search.

    from search import SearchEngine
    engine = SearchEngine.open("my-index")
    for hit in engine.search("red striped t-shirt", k=5):
        print(hit.product_id, hit.score, hit.scores)
"""

from indexer.config import SearchConfig
from indexer.errors import (ImageError, ImageRefusedError, ImageTooLargeError, IndexFormatError, ModelError, QueryError,
                            VitrinaError)

from search.engine import SearchEngine
from search.results import Hit, SearchResult
from search.query import Term

__all__ = [
    "Hit",
    "ImageError",
    "ImageRefusedError",
    "ImageTooLargeError",
    "IndexFormatError",
    "ModelError",
    "QueryError",
    "SearchConfig",
    "SearchEngine",
    "SearchResult",
    "Term",
    "VitrinaError",
]
