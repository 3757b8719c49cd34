import json

from click.testing import CliRunner
from PIL import Image

from vitrina.cli import cli


def test_demo_catalog_command_writes_a_catalog_vitrina_indexes(tmp_path, tiny_model_dir):
    runner = CliRunner()
    out = tmp_path / "demo"
    result = runner.invoke(cli, ["demo-catalog", "--out", str(out), "--products", "12", "--seed", "5", "--image-size", "64", "--queries", "10"])
    assert result.exit_code == 0, result.output
    assert "12 products" in result.output
    result = runner.invoke(cli, ["index", str(out / "catalog.jsonl"), "--index", str(tmp_path / "idx"), "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    assert "12 indexed" in result.output and "0 failed" in result.output
    sheet = tmp_path / "sheet.png"
    photo = next((out / "queries").iterdir())
    result = runner.invoke(cli, ["search", "red", "--image", str(photo), "--index", str(tmp_path / "idx"), "-k", "4", "--sheet", str(sheet)])
    assert result.exit_code == 0, result.output
    with Image.open(sheet) as image:
        assert image.size[0] > 400


def test_demo_runs_end_to_end_and_reuses_its_work(tmp_path, tiny_model_dir):
    runner = CliRunner()
    args = ["demo", "--dir", str(tmp_path / "d"), "--products", "30", "--model", str(tiny_model_dir), "-k", "3"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    for label in ("== text:", "== photo:", "== photo + text:", "== weighted terms:", "== filtered:"):
        assert label in first.output
    sheets = sorted(p.name for p in (tmp_path / "d" / "sheets").glob("*.png"))
    assert sheets == ["filtered.png", "negative.png", "photo-and-text.png", "photo.png", "text.png"]
    assert "30 products" in first.output
    again = runner.invoke(cli, args)
    assert again.exit_code == 0 and "reused" in again.output
    stamp = json.loads((tmp_path / "d" / "catalog" / "demo-catalog.json").read_text())
    assert stamp["products"] == 30
