"""README's example queries, run as written against the quick-start demo catalog, each checked against its comment."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
MARKER = "runs these very lines and checks each comment"

Hits = list[dict]


def _attr(hit: dict, name: str) -> str | None:
    return hit["product"]["attributes"].get(name)


def _mugs(hits: Hits) -> bool:
    return len(hits) == 10 and all(h["product"]["category"] == "mug" and (_attr(h, "color") == "blue" or _attr(h, "pattern") == "dotted")
                                   for h in hits)


def _tshirts(hits: Hits) -> bool:
    first, rest = hits[0], hits[1:]
    return (first["product"]["category"] == "t-shirt" and _attr(first, "color") == "red" and _attr(first, "pattern") == "striped"
            and all(h["product"]["category"] == "t-shirt" and (_attr(h, "color") == "red" or _attr(h, "pattern") == "striped")
                    for h in rest))


CLAIMS: dict[str, Callable[[Hits], bool]] = {
    "ten mugs, each blue or dotted (none is both)": _mugs,
    "the red striped t-shirt first, then t-shirts red or striped": _tshirts,
    "red watches: the photo shows a watch": lambda hits: len(hits) == 4 and all(
        h["product"]["category"] == "watch" and _attr(h, "color") == "red" for h in hits),
    "five watches, as P2024-00477 is one": lambda hits: len(hits) == 5 and all(h["product"]["category"] == "watch" for h in hits)
    and "P2024-00477" not in [h["product_id"] for h in hits],
    "the three sneakers under 50": lambda hits: len(hits) == 3 and all(
        h["product"]["category"] == "sneakers" and h["product"]["price"] < 50 for h in hits),
}


def readme_examples() -> list[tuple[list[str], str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index(MARKER):].split("```bash\n", 1)[1].split("```", 1)[0]
    examples = []
    for line in block.strip().splitlines():
        command, _, comment = line.partition("   # ")
        examples.append((shlex.split(command), comment.strip()))
    return examples


def test_every_readme_example_has_a_check():
    examples = readme_examples()
    assert len(examples) == 5 and [comment for _, comment in examples] == list(CLAIMS)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from indexer.config import ModelConfig
    from indexer.encoders.loading import load_encoder
    from indexer.pipeline import build_index
    from vitrina.commands.demo import ensure_demo_catalog

    folder = tmp_path_factory.mktemp("readme") / "vitrina-demo"
    catalog = ensure_demo_catalog(folder / "catalog", products=1000, seed=2024, quiet=True)  # what `vitrina demo` draws
    encoder = load_encoder(ModelConfig())
    build_index(catalog, folder / "index", encoder=encoder, model_spec={"name": encoder.identity.name, "pretrained": None})
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("number", range(5))
def test_readme_example_returns_what_its_comment_says(demo, number):
    from vitrina.cli import cli

    args, comment = readme_examples()[number]
    assert args[:2] == ["vitrina", "search"]
    args = [re.sub(r"^vitrina-demo", str(demo), a) for a in args[1:]]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)["hits"]
    summary = [(h["product_id"], h["product"]["category"], _attr(h, "color"), _attr(h, "pattern")) for h in hits]
    assert CLAIMS[comment](hits), (comment, summary)
