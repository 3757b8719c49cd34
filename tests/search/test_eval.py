"""Judgments files, evaluation groups, and the train-reranker / eval commands end to end on a tiny index."""

import json

import click
import pytest
from click.testing import CliRunner

from conftest import write_catalog
from indexer.pipeline import build_index
from search.evaluation.evaluate import EvalConfig, checks, query_groups
from search.evaluation.judgments import JudgmentsError, id_queries, read_judgments, split_queries
from vitrina.commands.rerank import register

COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("square", "circle", "triangle")


def judgment_rows():
    """Text, photo and photo+text queries over conftest's 24-product catalog (colour i%4, shape (i//4)%3)."""
    rows = []
    for q, (colour, shape) in enumerate([("red", "circle"), ("green", "square"), ("blue", "triangle"), ("yellow", "circle"),
                                         ("red", "square"), ("blue", "circle")]):
        for j in range(24):
            same_colour, same_shape = j % 4 == COLOURS.index(colour), (j // 4) % 3 == SHAPES.index(shape)
            label = 3 if same_colour and same_shape else 1 if same_colour else 0
            rows.append({"query_id": f"t{q}", "text": f"{colour} {shape} widget", "image": None, "kind": "text",
                         "product_id": f"P{j:03d}", "label": label})
    for q, shown in enumerate((5, 10)):
        for j in range(24):
            rows.append({"query_id": f"p{q}", "text": None, "image": f"images/p{shown}_0.png", "kind": "photo",
                         "product_id": f"P{j:03d}", "label": 3 if j == shown else 1 if j % 4 == shown % 4 else 0})
            rows.append({"query_id": f"tp{q}", "text": "but in red", "image": f"images/p{shown}_0.png", "kind": "text+photo",
                         "product_id": f"P{j:03d}", "label": 3 if j % 4 == 0 else 0, "weights": {"text": 1.0, "image": 0.5}})
    return rows


@pytest.fixture(scope="module")
def cli():
    @click.group()
    def group() -> None:
        """Test group holding the re-ranker commands."""

    register(group)
    return group


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_encoder, tiny_model_dir, cli):
    """A tiny index, its judgments, and a classifier trained by the command (the model loads once per session)."""
    root = tmp_path_factory.mktemp("eval")
    catalog = write_catalog(root / "catalog")
    judgments = catalog.parent / "judgments.jsonl"
    judgments.write_text("".join(json.dumps(r) + "\n" for r in judgment_rows()))
    index = root / "index"
    build_index(catalog, index, encoder=tiny_encoder, model_spec={"name": str(tiny_model_dir), "pretrained": None})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("search.engine.load_encoder", lambda config: tiny_encoder)
        trained = CliRunner().invoke(cli, ["train-reranker", "--index", str(index), "--judgments", str(judgments), "--epochs", "2",
                                           "--id-queries", "4", "--arch", "gated", "--json"])
        assert trained.exit_code == 0, trained.output
        yield index, judgments, json.loads(trained.stdout)


def test_read_judgments_groups_rows_and_resolves_images(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in judgment_rows()) + "\n")
    queries = {q.query_id: q for q in read_judgments(path)}
    assert len(queries) == 10 and queries["t0"].kind == "text" and queries["t0"].relevant == 6
    assert queries["p1"].image == tmp_path / "images" / "p10_0.png" and queries["p1"].text is None
    assert queries["tp0"].weights == {"text": 1.0, "image": 0.5} and queries["tp0"].labels["P004"] == 3
    assert queries["tp0"].search_args() == {"text": "but in red", "image": tmp_path / "images" / "p5_0.png",
                                            "weights": {"text": 1.0, "image": 0.5}}
    csv_path = tmp_path / "j.csv"
    csv_path.write_text("query_id,text,image,product_id,label,image_weight\nq1,red dress,,A,3,\nq1,red dress,,B,0,\n"
                        "q2,,shots/x.jpg,A,2,0.5\n")
    by_id = {q.query_id: q for q in read_judgments(csv_path)}
    assert by_id["q1"].kind == "text" and by_id["q1"].labels == {"A": 3, "B": 0} and by_id["q1"].weights is None
    assert by_id["q2"].kind == "photo" and by_id["q2"].image == tmp_path / "shots" / "x.jpg" and by_id["q2"].weights == {"image": 0.5}


@pytest.mark.parametrize("line, message", [
    ('{"query_id": "a", "text": "x", "product_id": "P", "label": -1}', "non-negative integer"),
    ('{"query_id": "a", "text": "x", "product_id": "P", "label": 1.5}', "non-negative integer"),
    ('{"query_id": "a", "product_id": "P", "label": 1}', "text, an image or both"),
    ('{"query_id": "a", "text": "x", "label": 1}', "required"),
    ('{"query_id": "a", "text": "x", "product_id": "P", "label": 1, "kind": "video"}', "kind"),
    ('{"query_id": "a", "text": "x", "product_id": "P", "label": 1}\n{"query_id": "a", "text": "y", "product_id": "Q", "label": 1}', "differs"),
    ("not json", "not JSON"),
])
def test_bad_judgments_name_the_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(JudgmentsError, match=message) as info:
        read_judgments(path)
    assert f"{path}:" in str(info.value)
    with pytest.raises(JudgmentsError, match="no such"):
        read_judgments(tmp_path / "missing.jsonl")


def test_splits_id_queries_and_groups(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in judgment_rows()))
    queries = read_judgments(path)
    rest, held = split_queries(queries, 0.5, seed=3)
    assert {q.kind for q in held} == {"text", "photo", "text+photo"} and len(rest) + len(held) == len(queries)
    assert split_queries(queries, 0.5, seed=3) == (rest, held)
    ids = id_queries([f"P{i:03d}" for i in range(24)], 5, seed=1)
    assert len(ids) == 5 and all(q.text == q.query_id[3:] and q.labels == {q.text: 3} for q in ids)
    products = {"A": {"id": "A", "brand": "Kestrel", "title": "Kestrel KX-123 red tee", "description": ""}}
    group = lambda text: query_groups(type(ids[0])(query_id="q", kind="text", text=text, labels={"A": 3}), products)  # noqa: E731
    assert group("KX-123") == ["text", "model"] and group("kestrel tee") == ["text", "brand"] and group("red tee") == ["text"]
    assert query_groups(ids[0], products) == ["id"]
    with pytest.raises(ValueError):
        EvalConfig(ks=(1, 500))


def test_train_reranker_then_eval_json_schema_and_plot(setup, cli, tmp_path):
    index, judgments, report = setup
    runner = CliRunner()
    assert report["train_queries"] + report["val_queries"] == 14 and report["skipped"] == 0
    assert report["reranker"] == str(index / "reranker") and len(report["epochs"]) == 2
    assert (index / "reranker" / "reranker.json").is_file()

    plot = tmp_path / "recall.png"
    result = runner.invoke(cli, ["eval", "--index", str(index), "--judgments", str(judgments), "--json", "-k", "1", "-k", "5",
                                 "--id-queries", "3", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= {"index", "judgments", "reranker", "queries", "ks", "ndcg_k", "depth", "curve_ks", "systems",
                         "latency_ms", "checks"}
    assert data["reranker"] is True and data["ks"] == [1, 5]
    assert data["queries"] == {"overall": 10, "id": 3, "photo": 2, "text": 6, "text+photo": 2}
    assert list(data["systems"]) == ["text", "image", "lexical", "fusion", "fusion+rerank"]
    for system in data["systems"].values():
        overall = system["overall"]
        assert set(overall) == {"recall@1", "recall@5", "ndcg@10", "mrr", "top1", "queries", "recall_curve"}
        assert overall["queries"] == 10 and len(overall["recall_curve"]) == len(data["curve_ks"])
        assert all(0.0 <= overall[k] <= 1.0 for k in ("recall@1", "recall@5", "ndcg@10", "mrr", "top1"))
        assert set(system["by_kind"]) == {"id", "photo", "text", "text+photo"}
    assert data["systems"]["lexical"]["by_kind"]["id"]["top1"] == 1.0  # BM25 finds an exact id
    assert data["systems"]["lexical"]["by_kind"]["photo"]["ndcg@10"] == 0.0  # no words to match
    assert set(data["latency_ms"]) >= {"encode", "candidates", "rerank", "total"} and data["latency_ms"]["rerank"] >= 0
    assert {"rerank latency median ms", "rerank gain ndcg@10 (overall)"} <= {c["name"] for c in data["checks"]}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    plain = runner.invoke(cli, ["eval", "--index", str(index), "--judgments", str(judgments), "--no-rerank", "--id-queries", "0"])
    assert plain.exit_code == 0, plain.output
    assert "weighted sum" in plain.stdout and "fusion + classifier" not in plain.stdout and "median latency ms" in plain.stdout
    assert "id (" not in plain.stdout and "photo (2 queries)" in plain.stdout


def test_a_mismatched_classifier_stops_eval_with_one_line(setup, cli):
    index, judgments, _ = setup
    meta_file = index / "reranker" / "reranker.json"
    saved = meta_file.read_text()
    meta = json.loads(saved)
    meta["index"]["created_at"] = 1.0
    meta_file.write_text(json.dumps(meta))
    try:
        result = CliRunner().invoke(cli, ["eval", "--index", str(index), "--judgments", str(judgments), "--id-queries", "0"])
    finally:
        meta_file.write_text(saved)
    assert result.exit_code == 1 and "trained for another index" in result.output and "1970-01-01" in result.output


def test_checks_compare_against_the_targets():
    def part(ndcg, top1=1.0):
        return {"overall": {"ndcg@10": ndcg, "queries": 4},
                "by_kind": {k: {"ndcg@10": ndcg, "queries": 1, "top1": top1} for k in ("text", "photo", "text+photo", "id")}}
    report = {"ndcg_k": 10, "latency_ms": {"rerank": 1.5},
              "systems": {"text": part(0.4), "image": part(0.3), "fusion": part(0.5, 0.9), "fusion+rerank": part(0.55)}}
    found = {c["name"]: c for c in checks(report)}
    assert found["rerank gain ndcg@10 (overall)"]["value"] == pytest.approx(0.1) and found["rerank gain ndcg@10 (overall)"]["passed"]
    assert found["fusion over best single modality ndcg@10 (text+photo)"]["value"] == pytest.approx(0.25)
    assert not found["fusion top1 (id)"]["passed"] and found["fusion+rerank top1 (id)"]["passed"]
    assert found["rerank latency median ms"]["passed"]
