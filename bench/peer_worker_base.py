"""What ``bench/peer_worker.py`` and ``bench/peer_engines.py`` share: the metadata columns, ids, recall, ``Peer``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

META_COLUMNS = ("id", "title", "price", "category", "brand", "color")


def row_of(product_id) -> int:
    """``SKU-0000597`` -> 597 (the product's row in the data); an int id (clip back's FAISS id, which is the
    row: its ``map_to_metadata`` writes the index id over the metadata's ``id`` column) stays as it is."""
    if isinstance(product_id, (int, np.integer)):
        return int(product_id)
    return int(str(product_id).rsplit("-", 1)[-1])


def recall(found: list[list[int]], truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k].tolist())) / k for f, t in zip(found, truth)]))


class Peer:
    """build() once; search(i, vector) -> the hits' metadata rows (dicts with "id"); knobs() -> settings to try."""

    name = "?"
    notes: list[str]

    def __init__(self, data: dict, work: Path, k: int):
        self.data, self.work, self.k = data, work, k
        self.notes = []

    def imports(self) -> None:
        """Import the peer's libraries (before the build timer starts: torch alone takes seconds to import)."""

    def build(self) -> None:
        raise NotImplementedError

    def settings(self) -> dict:
        """What the index is and how it is searched now."""
        return {}

    def knobs(self) -> list[dict]:
        """Search settings to try in order (cheapest first); [] when there is nothing to raise."""
        return []

    def apply(self, knob: dict) -> None:
        pass

    def restore(self) -> None:
        """Back to the settings the index was built with."""

    def parts(self, queries: np.ndarray) -> dict:
        """Optional: p50 ms of parts of a query (measured after the timed loop)."""
        return {}

    def search(self, key: str, vector: np.ndarray) -> list[dict]:
        raise NotImplementedError


# -- txtai ----------------------------------------------------------------------------------------------

LADDER = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
EF_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048)
