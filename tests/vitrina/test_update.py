"""`vitrina update` / ``indexer.feed.apply_feed``: partial feeds that change some fields of stored products."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from indexer.config import IndexConfig
from indexer.errors import CatalogError, IndexFormatError
from indexer.feed import NOT_IN_INDEX, apply_feed
from indexer.store.reader import IndexStore
from vitrina.cli import cli


def no_encoder():
    raise AssertionError("a fields-only feed must not load the encoder")


def write_jsonl(folder: Path, rows: list, name: str = "feed.jsonl") -> Path:
    """One line per row: a dict is dumped as JSON, a str written as it is."""
    path = folder / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(folder: Path, header: list[str], rows: list[list[str]], name: str = "feed.csv") -> Path:
    path = folder / name
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def stored(folder: Path, *ids: str) -> dict[str, tuple[int, dict]]:
    """id -> (pk, metadata) of the stored products among ``ids``."""
    with IndexStore.open(folder) as store:
        pks = store.product_pks(ids)
        metadata = store.products(list(pks.values()))
    return {pid: (pk, metadata[pk]) for pid, pk in pks.items()}


def faiss_files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.faiss")}


def text_vector(folder: Path, pk: int) -> np.ndarray:
    with IndexStore.open(folder) as store:
        return store.vectors_of([pk])["text"][0]


def problems_by_row(report) -> dict[int, str]:
    return {p.row: f"{p.product_id} {p.reason} ({p.outcome})" for p in report.problems}


# -- fields only: in place, no encoder, no FAISS work --------------------------------------------------------------------
def test_price_and_stock_feed_updates_in_place_without_the_encoder(built_index, tmp_path, tiny_encoder):
    from search import SearchEngine

    before = stored(built_index, "P001", "P002", "P003")
    files = faiss_files(built_index)
    with IndexStore.open(built_index) as store:
        generation = store.commit_info["generation"]
    with SearchEngine.open(built_index, encoder=tiny_encoder) as running:  # a reader open during the update
        feed = write_jsonl(tmp_path, [{"id": "P001", "price": 5.5, "stock": 3}, {"id": "P002", "stock": 0}])
        report = apply_feed(feed, built_index, encoder_factory=no_encoder)
        hits = running.search("widget", where={"price": {"lt": 6}}, k=5).hits
        assert [h.product_id for h in hits] == ["P001"] and hits[0].product["price"] == 5.5

    assert (report.rows, report.updated, report.fields_only, report.reembedded, report.unchanged, report.skipped) == (2, 2, 2, 0, 0, 0)
    assert report.problems == [] and report.commits == 1 and report.images == 0
    after = stored(built_index, "P001", "P002", "P003")
    assert {pid: pk for pid, (pk, _) in after.items()} == {pid: pk for pid, (pk, _) in before.items()}  # same pks
    assert after["P001"][1]["price"] == 5.5 and after["P001"][1]["attributes"] == {"color": "green", "stock": 3}
    assert after["P002"][1]["price"] == before["P002"][1]["price"]
    assert after["P002"][1]["attributes"] == {**before["P002"][1]["attributes"], "stock": 0}  # merged per key
    assert after["P003"] == before["P003"]
    for pid in ("P001", "P002"):  # nothing embedded changed
        assert {k: v for k, v in after[pid][1].items() if k not in ("price", "attributes")} == \
               {k: v for k, v in before[pid][1].items() if k not in ("price", "attributes")}
    assert faiss_files(built_index) == files  # no segment written, none rewritten
    with IndexStore.open(built_index) as store:
        assert store.commit_info["generation"] == generation + 1
        assert store.check()["products"] == 24

    with SearchEngine.open(built_index, encoder=tiny_encoder) as engine:
        cheap = engine.search("widget", where={"price": {"lt": 6}}, k=5).hits
        assert [h.product_id for h in cheap] == ["P001"] and cheap[0].product["price"] == 5.5
        in_stock = engine.search("widget", where={"stock": 3}, k=5).hits
        assert [h.product_id for h in in_stock] == ["P001"]
        assert {h.product_id for h in engine.search("widget", where={"stock": 0}, k=5).hits} == {"P002"}


def test_the_same_feed_twice_is_unchanged_and_commits_nothing(built_index, tmp_path):
    title = stored(built_index, "P002")["P002"][1]["title"]
    # P002 already costs 12 and has this title (sent with spaces around it): nothing to embed, nothing to change
    feed = write_jsonl(tmp_path, [{"id": "P001", "price": 5.5}, {"id": "P002", "price": 12.0, "title": f"  {title} "}])
    first = apply_feed(feed, built_index, encoder_factory=no_encoder)
    assert (first.updated, first.unchanged) == (1, 1)
    with IndexStore.open(built_index) as store:
        generation = store.commit_info["generation"]
    again = apply_feed(feed, built_index, encoder_factory=no_encoder)
    assert (again.rows, again.updated, again.unchanged, again.commits) == (2, 0, 2, 0)
    with IndexStore.open(built_index) as store:
        assert store.commit_info["generation"] == generation


def test_attributes_merge_per_key_and_empty_values_clear(built_index, tmp_path):
    before = stored(built_index, "P003")["P003"][1]
    feed = write_jsonl(tmp_path, [{"id": "P003", "color": None, "size": "L", "tags": ["a", "b"], "brand": None, "category": ""}])
    report = apply_feed(feed, built_index, encoder_factory=no_encoder)
    assert report.fields_only == 1, report.problems
    after = stored(built_index, "P003")["P003"][1]
    assert after["attributes"] == {"size": "L", "tags": '["a", "b"]'}  # color removed, lists stored as the catalog does
    assert after["brand"] is None and after["category"] is None and after["price"] == before["price"]
    assert after["title"] == before["title"] and after["images"] == before["images"]


def test_a_csv_feed_and_an_empty_cell(built_index, tmp_path):
    before = stored(built_index, "P005")["P005"][1]
    feed = write_csv(tmp_path, ["id", "price", "stock"], [["P004", "7.25", "12"], ["P005", "", "1"], ["NOPE", "1", "1"],
                                                           ["P006", "1,299.50", ""]])
    report = apply_feed(feed, built_index, encoder_factory=no_encoder)
    assert (report.rows, report.updated, report.skipped) == (4, 3, 1)
    assert problems_by_row(report) == {3: f"NOPE {NOT_IN_INDEX} (skipped)"}
    after = stored(built_index, "P004", "P005", "P006")
    assert after["P004"][1]["price"] == 7.25 and after["P004"][1]["attributes"]["stock"] == "12"  # CSV text, as in a catalog
    assert after["P005"][1]["price"] is None and after["P005"][1]["attributes"] == {**before["attributes"], "stock": "1"}
    assert after["P006"][1]["price"] == 1299.5 and "stock" not in after["P006"][1]["attributes"]


# -- embedded fields: re-embedded through the pipeline ------------------------------------------------------------------
def test_a_title_change_reembeds_that_product_only(built_index, tmp_path, tiny_encoder):
    from search import SearchEngine

    before = stored(built_index, "P006", "P007")
    old_vector = text_vector(built_index, before["P006"][0])
    files = faiss_files(built_index)
    calls = []

    def factory():
        calls.append(1)
        return tiny_encoder

    feed = write_jsonl(tmp_path, [{"id": "P006", "title": "zebra lamp"}, {"id": "P007", "price": 1.0}])
    report = apply_feed(feed, built_index, encoder_factory=factory, config=IndexConfig(batch_size=1))
    assert calls == [1]  # made once, for the title row only
    assert (report.updated, report.fields_only, report.reembedded, report.images) == (2, 1, 1, 1)
    after = stored(built_index, "P006", "P007")
    assert after["P007"][0] == before["P007"][0] and after["P007"][1]["price"] == 1.0
    product = after["P006"][1]
    assert product["title"] == "zebra lamp"
    assert {k: v for k, v in product.items() if k != "title"} == {k: v for k, v in before["P006"][1].items() if k != "title"}
    assert not np.allclose(text_vector(built_index, after["P006"][0]), old_vector)
    assert set(faiss_files(built_index)) - set(files)  # the new vectors went into a new segment
    with IndexStore.open(built_index) as store:
        assert store.check()["products"] == 24
    with SearchEngine.open(built_index, encoder=tiny_encoder) as engine:
        assert engine.search("zebra", k=3).hits[0].product_id == "P006"


def test_new_images_are_read_from_the_feeds_folder(built_index, tmp_path, tiny_encoder, catalog):
    from conftest import draw_product

    feeds = tmp_path / "feeds"
    (feeds / "img").mkdir(parents=True)
    draw_product(feeds / "img" / "new.png", "yellow", "circle")
    feed = write_jsonl(feeds, [{"id": "P008", "images": ["img/new.png"]}, {"id": "P009", "image": "img/missing.png"}])
    before = stored(built_index, "P009")
    report = apply_feed(feed, built_index, encoder_factory=lambda: tiny_encoder)
    assert (report.reembedded, report.images, report.skipped) == (1, 1, 1)
    after = stored(built_index, "P008", "P009")
    assert after["P008"][1]["images"] == [str((feeds / "img" / "new.png").resolve())]
    # an image that cannot be read now is not a change, as in `vitrina index`: the stored version stays, whole
    assert after["P009"] == before["P009"]
    (problem,) = report.problems
    assert (problem.row, problem.product_id, problem.outcome) == (2, "P009", "kept the stored version")
    assert problem.image.endswith("missing.png")


def test_a_wrong_encoder_is_refused(built_index, tmp_path):
    from indexer.errors import ModelError

    class Other:
        from indexer.encoders.base import ModelIdentity

        identity = ModelIdentity(name="other", pretrained=None, fingerprint="x", dim=32)

    feed = write_jsonl(tmp_path, [{"id": "P001", "title": "new words"}])
    before = stored(built_index, "P001")
    with pytest.raises(ModelError, match="built with model"):
        apply_feed(feed, built_index, encoder_factory=Other)
    assert stored(built_index, "P001") == before


# -- bad rows --------------------------------------------------------------------------------------------------------
def test_bad_rows_are_reported_by_row_and_leave_stored_data_untouched(built_index, tmp_path):
    ids = ("P001", "P002", "P003", "P004", "P010")
    before = stored(built_index, *ids)
    feed = write_jsonl(tmp_path, [
        {"id": "P001", "price": "cheap", "stock": 4},                    # 1: bad price: nothing of the row is applied
        {"id": "NOPE", "price": 1},                                      # 2
        {"id": "P002"},                                                  # 3
        "{bad",                                                          # 4
        {"price": 3},                                                    # 5
        {"id": "P003", "price": -1},                                     # 6
        {"id": "P004", "title": "", "description": "", "images": None},  # 7
        {"id": "P005", "price": 99},                                     # 8: good
        {"id": "P005", "price": 1},                                      # 9
        {"id": "P010", "images": [{"not": "a path"}]},                   # 10
        {"id": "P010", "title": {"a": 1}},                               # 11
    ])
    report = apply_feed(feed, built_index, encoder_factory=no_encoder)
    rows = problems_by_row(report)
    assert sorted(rows) == [1, 2, 3, 4, 5, 6, 7, 9, 10, 11]
    assert rows[1].startswith("P001 field 'price': price must be a number") and rows[1].endswith("(skipped)")
    assert rows[2] == f"NOPE {NOT_IN_INDEX} (skipped)"
    assert rows[3] == "P002 only an id: no field to update (skipped)"
    assert rows[4].startswith("None invalid JSON")
    assert rows[5] == "None missing id (skipped)"
    assert rows[6].startswith("P003 field 'price': price must not be negative")
    assert rows[7] == "P004 the update leaves no title, description or image: nothing to index (skipped)"
    assert rows[9] == "P005 duplicate id (the first row wins) (skipped)"
    assert rows[10].startswith("P010 field 'images': image entries must be strings")
    assert rows[11].startswith("P010 field 'title': title must be text")
    assert (report.rows, report.updated, report.skipped) == (11, 1, 10)
    assert stored(built_index, *ids) == before
    assert stored(built_index, "P005")["P005"][1]["price"] == 99


def test_an_unreadable_feed_raises(built_index, tmp_path):
    with pytest.raises(CatalogError, match="feed file not found"):
        apply_feed(tmp_path / "none.jsonl", built_index, encoder_factory=no_encoder)
    (tmp_path / "feed.txt").write_text("id\n")
    with pytest.raises(CatalogError, match="unknown catalog format"):
        apply_feed(tmp_path / "feed.txt", built_index, encoder_factory=no_encoder)
    with pytest.raises(CatalogError, match="'id' column"):
        apply_feed(write_csv(tmp_path, ["sku", "price"], [["P001", "1"]]), built_index, encoder_factory=no_encoder)
    with pytest.raises(IndexFormatError, match="not an index folder"):
        apply_feed(write_jsonl(tmp_path, [{"id": "P001", "price": 1}]), tmp_path / "nowhere", encoder_factory=no_encoder)


# -- the command -------------------------------------------------------------------------------------------------------
def test_cli_update_summary_problems_and_json(built_index, tmp_path):
    runner = CliRunner()
    feed = write_csv(tmp_path, ["id", "price", "stock"], [["P001", "4.5", "3"], ["NOPE", "1", "1"], ["P002", "abc", ""]])
    result = runner.invoke(cli, ["update", str(feed), "--index", str(built_index)])
    assert result.exit_code == 0, result.output
    assert "1 updated (1 fields only, 0 re-embedded), 0 unchanged, 2 skipped, 0 failed of 3 rows" in result.stdout
    assert f"row 2 'NOPE': {NOT_IN_INDEX} (skipped)" in result.stderr
    assert "row 3 'P002': field 'price': price must be a number" in result.stderr
    report_file = tmp_path / "report.json"
    again = runner.invoke(cli, ["update", str(feed), "--index", str(built_index), "--json", "--report", str(report_file)])
    assert again.exit_code == 0, again.output
    data = json.loads(again.stdout)
    assert data == json.loads(report_file.read_text())
    assert (data["rows"], data["updated"], data["unchanged"], data["skipped"]) == (3, 0, 1, 2)
    assert [p["row"] for p in data["problems"]] == [2, 3]


def test_cli_title_change_loads_the_index_model(built_index, tmp_path):
    feed = write_jsonl(tmp_path, [{"id": "P011", "title": "zebra lamp"}])
    result = CliRunner().invoke(cli, ["update", str(feed), "--index", str(built_index), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "1 updated (0 fields only, 1 re-embedded)" in result.stdout
    assert stored(built_index, "P011")["P011"][1]["title"] == "zebra lamp"


@pytest.mark.parametrize("content, message", [
    ("", "nothing updated: the feed has no rows"),
    ('{"id": "NOPE", "price": 1}\n{"id": "P001"}\n', "nothing updated: none of its 2 row(s) could be applied (row 1 'NOPE'"),
])
def test_cli_exits_1_when_nothing_could_be_applied(built_index, tmp_path, content, message):
    feed = tmp_path / "feed.jsonl"
    feed.write_text(content)
    for extra in ([], ["--json"]):
        result = CliRunner().invoke(cli, ["update", str(feed), "--index", str(built_index), *extra])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_cli_errors(built_index, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(cli, ["update", str(tmp_path / "none.csv"), "--index", str(built_index)])
    assert missing.exit_code == 2 and "does not exist" in missing.output  # as `vitrina index`: a usage error
    feed = write_jsonl(tmp_path, [{"id": "P001", "price": 1}])
    nowhere = runner.invoke(cli, ["update", str(feed), "--index", str(tmp_path / "nowhere")])
    assert nowhere.exit_code == 1 and "not an index folder" in nowhere.output and "Traceback" not in nowhere.output
    bad_header = runner.invoke(cli, ["update", str(write_csv(tmp_path, ["sku"], [["P001"]])), "--index", str(built_index)])
    assert bad_header.exit_code == 1 and "'id' column" in bad_header.output
    helped = runner.invoke(cli, ["update", "--help"])
    assert helped.exit_code == 0 and "Example" in helped.output and "vitrina update prices.csv --index my-index" in helped.output
