import json

import pytest
from click.testing import CliRunner

from conftest import write_catalog
from vitrina.cli import cli


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def cli_catalog(tmp_path_factory):
    return write_catalog(tmp_path_factory.mktemp("cli-catalog"))


def build_cli_index(tmp_path, catalog, tiny_model_dir):
    runner = CliRunner()
    folder = tmp_path / "cli-index"
    result = runner.invoke(cli, ["index", str(catalog), "--index", str(folder), "--model", str(tiny_model_dir),
                                 "--batch-size", "5", "--report", str(tmp_path / "report.json"), "--profile"])
    assert result.exit_code == 0, result.output
    assert "24 indexed, 0 updated, 0 unchanged, 0 skipped, 0 failed of 24 rows (36 images embedded)" in result.output
    profile = {line.split()[0]: line.split() for line in result.output.splitlines() if line.split()}
    assert profile["decode"][1] == "worker" and profile["image"][1] == "main" and "images/s," in profile["wall"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["indexed"] == 24 and report["rows"] == 24
    assert set(report["stages"]) >= {"read", "decode", "text", "image", "store", "wait", "wall"}
    assert all(v >= 0 for v in report["stages"].values()) and report["stages"]["wall"] > 0
    return folder


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory, cli_catalog, tiny_model_dir):
    """Built once for the module; tests that change an index build their own."""
    return build_cli_index(tmp_path_factory.mktemp("cli"), cli_catalog, tiny_model_dir)


def test_index_search_info_end_to_end(runner, cli_index, cli_catalog):
    catalog = cli_catalog
    result = runner.invoke(cli, ["search", "red circle widget", "--index", str(cli_index), "-k", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split() == ["#", "id", "score", "image", "text", "price", "title"]
    assert len(result.output.strip().splitlines()) >= 4
    photo = catalog.parent / "images" / "p7_0.png"
    result = runner.invoke(cli, ["search", "--index", str(cli_index), "--image", str(photo), "--image-share", "1", "--json", "-k", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["hits"][0]["product_id"] == "P007"
    assert set(data["hits"][0]["scores"]) == {"image", "text", "lexical", "field", "fused", "image_cosine", "text_cosine", "bm25"}
    assert set(data["timings_ms"]) >= {"encode", "ann", "sqlite", "total"}
    info = runner.invoke(cli, ["info", "--index", str(cli_index), "--json"])
    assert info.exit_code == 0 and json.loads(info.output)["counts"]["products"] == 24
    assert "products   24" in runner.invoke(cli, ["info", "--index", str(cli_index)]).output


def test_terms_filters_like_and_env_default(runner, cli_index, monkeypatch):
    monkeypatch.setenv("VITRINA_INDEX", str(cli_index))
    result = runner.invoke(cli, ["search", "--term", "text:widget=1", "--term", "text:red=-0.3", "--where", "price<15",
                                 "--where", "category=square,circle", "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)["hits"]
    assert hits and all(h["product"]["price"] < 15 and h["product"]["category"] in ("square", "circle") for h in hits)
    like = json.loads(runner.invoke(cli, ["search", "--like", "P003", "-k", "5", "--json"]).output)["hits"]
    assert len(like) == 5 and "P003" not in [h["product_id"] for h in like]


@pytest.mark.parametrize("args, message", [
    (["search", "x", "--where", "colour=red"], "unknown filter field 'colour'"),
    (["search", "x", "--term", "sound:beep"], "KIND:VALUE"),
    (["search"], "give TEXT"),
    (["search", "--like", "NOPE"], "unknown product id"),
    (["search", "x", "--image", "/nonexistent.jpg"], "file not found"),
])
def test_errors_are_one_clear_line_without_traceback(runner, cli_index, args, message):
    result = runner.invoke(cli, [*args, "--index", str(cli_index)])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_index_and_unknown_model_fail_cleanly(runner, tmp_path, catalog):
    result = runner.invoke(cli, ["search", "x", "--index", str(tmp_path / "none")])
    assert result.exit_code == 1 and "not an index folder" in result.output
    result = runner.invoke(cli, ["index", str(catalog), "--index", str(tmp_path / "i"), "--model", "NoSuchNet-7"])
    assert result.exit_code == 1 and "unknown model 'NoSuchNet-7'" in result.output
    result = runner.invoke(cli, ["index", str(catalog), "--index", str(tmp_path / "i"), "--model", "ViT-B-32"])
    assert result.exit_code == 1 and "--pretrained" in result.output


def test_repair_rebuilds_a_deleted_faiss_file(runner, tmp_path, catalog, tiny_model_dir):
    cli_index = build_cli_index(tmp_path, catalog, tiny_model_dir)
    before = json.loads(runner.invoke(cli, ["search", "green", "--index", str(cli_index), "--json"]).output)["hits"]
    for path in cli_index.glob("*.faiss"):
        path.unlink()
    broken = runner.invoke(cli, ["search", "green", "--index", str(cli_index)])
    assert broken.exit_code == 1 and "vitrina repair" in broken.output
    repaired = runner.invoke(cli, ["repair", "--index", str(cli_index)])
    assert repaired.exit_code == 0, repaired.output
    after = json.loads(runner.invoke(cli, ["search", "green", "--index", str(cli_index), "--json"]).output)["hits"]
    assert [h["product_id"] for h in after] == [h["product_id"] for h in before]


def test_every_command_has_help_with_an_example(runner):
    for name, command in cli.commands.items():
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0
        assert "Example" in result.output, name


def test_delete_and_check_commands(runner, tmp_path, catalog, tiny_model_dir):
    folder = build_cli_index(tmp_path, catalog, tiny_model_dir)
    result = runner.invoke(cli, ["delete", "--index", str(folder), "P001", "P002", "NOPE"])
    assert result.exit_code == 0, result.output
    assert "deleted 2 product(s); not in the index: NOPE" in result.output
    check = runner.invoke(cli, ["check", "--index", str(folder)])
    assert check.exit_code == 0 and "22 products" in check.output, check.output
    hits = json.loads(runner.invoke(cli, ["search", "widget", "-k", "30", "--index", str(folder), "--json"]).output)["hits"]
    assert {h["product_id"] for h in hits}.isdisjoint({"P001", "P002"}) and len(hits) == 22
    again = runner.invoke(cli, ["index", str(catalog), "--index", str(folder), "--model", str(tiny_model_dir)])
    assert "2 indexed, 0 updated, 22 unchanged" in again.output, again.output


def test_search_field_weight_and_no_compose_options(cli_index):
    runner = CliRunner()
    on = json.loads(runner.invoke(cli, ["search", "green circle", "--index", str(cli_index), "--json", "-k", "3"]).output)
    off = runner.invoke(cli, ["search", "green circle", "--index", str(cli_index), "--json", "-k", "3", "--field-weight", "0",
                              "--no-compose"])
    assert off.exit_code == 0, off.output
    off = json.loads(off.output)
    assert on["weights"]["field_weight"] == 5.0 and off["weights"]["field_weight"] == 0.0
    assert any(h["matched"] for h in on["hits"]) and not any(h["matched"] for h in off["hits"])
