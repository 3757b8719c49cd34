"""A small thread-safe LRU cache of text embeddings: shoppers repeat queries."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import cast

import numpy as np

from indexer.encoders.base import Encoder



class TextCache:
    """A small LRU cache of text embeddings (queries repeat)."""

    def __init__(self, size: int = 1024):
        self.size = size
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, encoder: Encoder, texts: list[str]) -> np.ndarray:
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._items]
        if missing:
            vectors = encoder.encode_texts(missing)
            with self._lock:
                for text, vector in zip(missing, vectors):
                    self._items[text] = vector
                    self._items.move_to_end(text)
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        with self._lock:
            found = {t: self._items.get(t) for t in texts}
        if any(v is None for v in found.values()):  # evicted meanwhile by another thread
            return encoder.encode_texts(texts)
        return np.stack([cast(np.ndarray, found[t]) for t in texts])
