"""The peer engines ``bench/peer_worker.py`` drives (txtai, LanceDB, clip-retrieval), each behind ``Peer``.

Run inside a peer's own virtual environment, beside peer_worker.py (imported as a sibling module)."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np

from peer_worker_base import EF_LADDER, LADDER, META_COLUMNS, Peer, row_of  # noqa: F401  (shared with the worker)


class Txtai(Peer):
    """``Embeddings({"transform": fn, "content": True})``: the transform function maps a document's text key
    to its precomputed vector (txtai's documented way to index external vectors), the default ANN backend
    (faiss) picks its index by size, content (the metadata) lives in txtai's SQLite content store; a query
    is one SQL statement with ``similar()`` selecting the metadata columns."""

    name = "txtai"

    def imports(self) -> None:
        import txtai  # noqa: F401

    def build(self) -> None:
        from txtai import Embeddings

        vectors, queries, tune = self.data["vectors"], self.data["queries"], self.data["tune_queries"]
        lookup = {f"doc{i}": vectors[i] for i in range(len(vectors))}
        lookup.update({f"query{i}": queries[i] for i in range(len(queries))})
        lookup.update({f"tune{i}": tune[i] for i in range(len(tune))})

        def transform(inputs):
            return np.stack([lookup[x] for x in inputs])

        self.embeddings = Embeddings({"transform": transform, "content": True})
        self.embeddings.index({**row, "text": f"doc{i}"} for i, row in enumerate(self.data["meta"]))
        self.ann = self.embeddings.ann
        config = self.embeddings.config
        self.backend = config.get("backend", "faiss")
        self.components = (config.get(self.backend) or {}).get("components") or config.get("components")
        self.default_nprobe = self._nprobe() if hasattr(self.ann, "nprobe") else None
        self.notes.append(f"method={config.get('method')}, backend={self.backend}")

    def _nprobe(self) -> int | None:
        try:
            return int(self.ann.nprobe())
        except Exception:  # noqa: BLE001 - a backend without the knob
            return None

    def _nlist(self) -> int | None:
        backend = getattr(self.ann, "backend", None)
        try:
            import faiss

            return int(faiss.extract_index_ivf(backend).nlist)
        except Exception:  # noqa: BLE001 - not an IVF index
            return None

    def settings(self) -> dict:
        return {"backend": self.backend, "index": self._factory(), "nprobe": self._nprobe() if self._nlist() else None,
                "default_nprobe": self.default_nprobe if self._nlist() else None, "txtai_components": self.components}

    def _factory(self) -> str:
        return describe_faiss(getattr(self.ann, "backend", None))

    def knobs(self) -> list[dict]:
        nlist = self._nlist()
        if not nlist or self.default_nprobe is None:
            return []
        ladder = [v for v in LADDER if self.default_nprobe < v < nlist]
        return [{"nprobe": v} for v in ladder] + ([{"nprobe": nlist}] if nlist > self.default_nprobe else [])

    def apply(self, knob: dict) -> None:
        section = self.embeddings.config.setdefault(self.backend, {})
        section["nprobe"] = knob["nprobe"]
        if self.ann.config is not self.embeddings.config:  # the ANN reads its own copy in some versions
            self.ann.config.setdefault(self.backend, {})["nprobe"] = knob["nprobe"]

    def restore(self) -> None:
        for config in (self.embeddings.config, self.ann.config):
            (config.get(self.backend) or {}).pop("nprobe", None)

    def search(self, key: str, vector: np.ndarray) -> list[dict]:
        sql = (f"select id, title, price, category, brand, color, score from txtai "
               f"where similar('{key}') limit {self.k}")
        return self.embeddings.search(sql)


# -- LanceDB -----------------------------------------------------------------------------------------------


class Lance(Peer):
    """A LanceDB table (vector + metadata columns) with ``create_index()``'s default ANN index; ``nprobes`` and
    ``refine_factor`` (exact re-ranking of refine_factor x k PQ candidates) are the knobs."""

    name = "lancedb"

    def imports(self) -> None:
        import lancedb  # noqa: F401
        import lancedb.index  # noqa: F401

    def build(self) -> None:
        import inspect

        import lancedb
        import pyarrow as pa

        vectors, meta = self.data["vectors"], self.data["meta"]
        columns = {c: [row[c] for row in meta] for c in META_COLUMNS}
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
        table = pa.table({**columns, "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})
        self.db = lancedb.connect(str(self.work / "lancedb"))
        self.table = self.db.create_table("products", data=table, mode="overwrite")
        try:  # the recommended API (lancedb >= 0.2x): a column and an index config, its defaults
            from lancedb.index import IvfPq

            config = IvfPq()
            self.table.create_index("vector", config=config)
            self.index_type, self.metric = repr(config), config.distance_type
        except ImportError:  # older lancedb: the legacy signature's defaults
            signature = inspect.signature(self.table.create_index)
            self.index_type = signature.parameters["index_type"].default if "index_type" in signature.parameters else "IVF_PQ"
            self.metric = signature.parameters["metric"].default if "metric" in signature.parameters else "?"
            self.table.create_index(vector_column_name="vector")
        self.nprobes, self.refine = None, None
        try:
            self.index_stats = {i.name: str(self.table.index_stats(i.name)) for i in self.table.list_indices()}
        except Exception as exc:  # noqa: BLE001 - informational only
            self.index_stats = {"error": repr(exc)}
        self.notes.append(f"create_index default: {self.index_type}")

    def settings(self) -> dict:
        return {"index_type": self.index_type, "metric": self.metric, "index_stats": self.index_stats,
                "nprobes": self.nprobes or "default", "refine_factor": self.refine}

    def knobs(self) -> list[dict]:
        # LanceDB's default is nprobes 20 (explain_plan: minimum_nprobes=20) and refine_factor None (no exact
        # re-ranking of the PQ candidates); the default itself is measured before these.
        out = []
        for refine in (None, 2, 5, 10, 20, 30, 50, 100):
            for nprobes in (20, 32, 48, 64, 96, 128, 192, 256):
                if refine is not None or nprobes > 20:
                    out.append({"nprobes": nprobes, "refine_factor": refine})
        return out

    def apply(self, knob: dict) -> None:
        self.nprobes, self.refine = knob["nprobes"], knob["refine_factor"]

    def restore(self) -> None:
        self.nprobes, self.refine = None, None

    def search(self, key: str, vector: np.ndarray) -> list[dict]:
        query = self.table.search(vector, vector_column_name="vector").limit(self.k).select(list(META_COLUMNS))
        if self.nprobes:
            query = query.nprobes(self.nprobes)
        if self.refine:
            query = query.refine_factor(self.refine)
        return query.to_list()


# -- clip-retrieval -----------------------------------------------------------------------------------------------


class ClipRetrieval(Peer):
    """clip-retrieval's own pieces, minus the CLIP model: ``clip_index`` (autofaiss picks and tunes the FAISS
    index under its default memory budget) over an embeddings folder (``text_emb/*.npy`` + ``metadata/*.parquet``),
    then clip back's ``KnnService.knn_search`` + ``map_to_metadata`` with its default metadata provider
    (parquet, neither hdf5 nor arrow) on a ``ClipResource`` whose encoder is absent: the query vector is given."""

    name = "clip-retrieval"

    def imports(self) -> None:
        import importlib

        import pandas  # noqa: F401

        # ``from clip_retrieval import clip_back`` is the package's re-exported function, not the module
        importlib.import_module("clip_retrieval.clip_back")
        importlib.import_module("clip_retrieval.clip_index")

    def build(self) -> None:
        import dataclasses
        import importlib
        import inspect

        import faiss
        import pandas as pd

        clip_back = importlib.import_module("clip_retrieval.clip_back")
        clip_index = importlib.import_module("clip_retrieval.clip_index").clip_index

        emb = self.work / "emb"
        shutil.rmtree(emb, ignore_errors=True)
        (emb / "text_emb").mkdir(parents=True)
        (emb / "metadata").mkdir(parents=True)
        np.save(emb / "text_emb" / "text_emb_0.npy", self.data["vectors"].astype(np.float32))
        pd.DataFrame(self.data["meta"], columns=list(META_COLUMNS)).to_parquet(emb / "metadata" / "metadata_0.parquet")
        index_folder = self.work / "index"
        shutil.rmtree(index_folder, ignore_errors=True)
        index_folder.mkdir()
        defaults = {n: p.default for n, p in inspect.signature(clip_index).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        self.clip_index_defaults = {k: v for k, v in defaults.items() if isinstance(v, (str, int, float, bool, type(None)))}
        clip_index(str(emb), str(index_folder))
        if not (index_folder / "text.index").is_file():
            raise RuntimeError("clip_index wrote no text.index (autofaiss failed; see the worker's stderr)")
        infos_path = index_folder / "text.json"
        self.infos = json.loads(infos_path.read_text()) if infos_path.is_file() else {}
        index = clip_back.load_index(str(index_folder / "text.index"), False)
        provider, mapping = clip_back.load_metadata_provider(str(index_folder), False, False, None, list(META_COLUMNS), False)
        fields = {f.name for f in dataclasses.fields(clip_back.ClipResource)}
        values = {"device": "cpu", "metadata_provider": provider, "image_index": None, "text_index": index,
                  "ivf_old_to_new_mapping": mapping, "columns_to_return": list(META_COLUMNS),
                  "metadata_is_ordered_by_ivf": False}
        self.resource = clip_back.ClipResource(**{f: values.get(f) for f in fields})
        self.service = clip_back.KnnService(clip_resources={"products": self.resource})
        self.index = index
        self.faiss = faiss
        self.index_key = self.infos.get("index_key") or self._describe(index)
        self.autofaiss_param = self.infos.get("index_param")
        self.param = self.autofaiss_param
        self.notes.append(f"autofaiss chose {self.index_key} ({self.autofaiss_param})")

    def _describe(self, index) -> str:
        return type(self.faiss.downcast_index(index)).__name__

    def settings(self) -> dict:
        return {"index_key": self.index_key, "autofaiss_index_param": self.autofaiss_param, "search_param": self.param,
                "clip_index_defaults": self.clip_index_defaults, "metadata_provider": type(self.resource.metadata_provider).__name__,
                "deduplicate": False, "autofaiss_infos": self.infos}

    def knobs(self) -> list[dict]:
        key = str(self.index_key)
        start = _param_value(self.autofaiss_param)
        if key.startswith("HNSW"):
            base = start.get("efSearch", 16)
            return [{"param": f"efSearch={v}"} for v in EF_LADDER if v > base]
        if "IVF" in key:
            nlist = faiss_nlist(self.faiss, self.index) or 1 << 16
            base = start.get("nprobe", 1)
            hnsw_quantizer = "_HNSW" in key or "IVF_HNSW" in key or ",HNSW" in key.split(",")[0]
            out = []
            for v in (v for v in LADDER if v > base):
                if v > nlist:
                    break
                param = f"nprobe={v}" + (f",quantizer_efSearch={max(2 * v, start.get('efSearch', 0))}" if hnsw_quantizer else "")
                out.append({"param": param})
            return out
        return []

    def apply(self, knob: dict) -> None:
        self.param = knob["param"]
        self.faiss.ParameterSpace().set_index_parameters(self.index, knob["param"])

    def parts(self, queries: np.ndarray) -> dict:
        """p50 ms of the FAISS search alone (what ``knn_search`` runs) and of ``map_to_metadata`` alone."""
        knn, meta = [], []
        for q in queries:
            t = time.perf_counter()
            distances, indices, _ = self.index.search_and_reconstruct(q.reshape(1, -1), self.k)
            knn.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            self.service.map_to_metadata(list(indices[0]), list(distances[0]), self.k, self.resource.metadata_provider,
                                         self.resource.columns_to_return)
            meta.append((time.perf_counter() - t) * 1000)
        return {"faiss_search_and_reconstruct_p50_ms": round(float(np.median(knn)), 3),
                "map_to_metadata_p50_ms": round(float(np.median(meta)), 3)}

    def restore(self) -> None:
        if self.autofaiss_param:
            self.apply({"param": self.autofaiss_param})

    def search(self, key: str, vector: np.ndarray) -> list[dict]:
        distances, indices = self.service.knn_search(
            vector.reshape(1, -1), modality="text", num_result_ids=self.k, clip_resource=self.resource,
            deduplicate=False, use_safety_model=False, use_violence_detector=False)
        if len(distances) == 0:
            return []
        return self.service.map_to_metadata(indices, distances, self.k, self.resource.metadata_provider,
                                            self.resource.columns_to_return)


def describe_faiss(index) -> str:
    """A FAISS index as a factory-like string: ``IDMap,Flat``, ``IVF512,Flat``, ``HNSW32``..."""
    try:
        import faiss
    except ImportError:
        return type(index).__name__
    index = faiss.downcast_index(index)
    prefix = ""
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        prefix, index = "IDMap,", faiss.downcast_index(index.index)
    name = type(index).__name__
    if isinstance(index, faiss.IndexIVF):
        kind = {"IndexIVFFlat": "Flat", "IndexIVFPQ": f"PQ{getattr(index, 'pq', None) and index.pq.M}",
                "IndexIVFScalarQuantizer": "SQ"}.get(name, name)
        return f"{prefix}IVF{index.nlist},{kind}"
    if isinstance(index, faiss.IndexHNSW):
        return f"{prefix}{name}(M={index.hnsw.nb_neighbors(1)})"
    return prefix + {"IndexFlatIP": "Flat", "IndexFlatL2": "Flat(L2)", "IndexFlat": "Flat"}.get(name, name)


def faiss_nlist(faiss, index) -> int | None:
    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except Exception:  # noqa: BLE001 - not an IVF index
        return None


def _param_value(param: str | None) -> dict[str, int]:
    out = {}
    for part in str(param or "").split(","):
        name, _, value = part.partition("=")
        if value.strip().lstrip("-").isdigit():
            out[name.strip()] = int(value)
    return out
