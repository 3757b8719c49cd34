"""Pieces shared by the command modules: domain errors to clean exits, byte-size and model options, --index."""

from __future__ import annotations

import functools
import re

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from indexer.errors import VitrinaError

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}

_P = ParamSpec("_P")
_R = TypeVar("_R")
_F = TypeVar("_F", bound=Callable[..., Any])


def domain_errors(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn library exceptions (``VitrinaError``) into one clean line on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return func(*args, **kwargs)
        except VitrinaError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def parse_size(text: str) -> int:
    """Bytes in ``text``: a number with an optional unit (``512MB``, ``2GiB``, ``1.5G``, ``1000000``)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 512MB, 2GB, 1.5GiB)")
    return int(float(match.group(1)) * _UNITS[unit])


if TYPE_CHECKING:
    from indexer.config import ModelConfig

    _IntParamType = click.ParamType[int]
else:  # click < 8.4: ParamType is not generic at runtime
    _IntParamType = click.ParamType


class ByteSize(_IntParamType):
    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            size = parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if size <= 0:
            self.fail(f"{value!r}: the size must be positive", param, ctx)
        return size


DB_OPTION = click.option(
    "--db", "database", envvar="VITRINA_DB", metavar="URL",
    help="PostgreSQL database holding the index's metadata: postgresql+psycopg://USER@HOST/DATABASE (password from "
         "PGPASSWORD or ~/.pgpass). Default: $VITRINA_DB, else the database the index folder names, else SQLite in the folder.",
)

INDEX_OPTION = click.option(
    "--index", "index_dir", envvar="VITRINA_INDEX", required=True, type=click.Path(path_type=Path),
    help="Index folder (default: $VITRINA_INDEX).",
)


def _check_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    value = value.strip().lower()
    kind, colon, number = value.partition(":")
    if kind in ("auto", "cpu", "cuda", "mps") and (not colon or (kind == "cuda" and number.isdigit())):
        return value
    raise click.BadParameter(f"{value!r}: use auto, cpu, cuda, cuda:N or mps")


DEVICE_OPTION = click.option(
    "--device", default="auto", show_default=True, callback=_check_device, metavar="auto|cpu|cuda[:N]|mps",
    help="Where the model runs: auto takes a CUDA GPU (or Apple's mps) when torch sees one, else the CPU; "
         "naming a device torch does not see is an error.",
)


def model_options(func: _F) -> _F:
    func = DEVICE_OPTION(func)
    func = click.option("--threads", type=click.IntRange(min=1), help="Torch CPU threads (default: torch's choice).")(func)
    func = click.option("--pretrained", help="Pretrained tag (laion2b_s34b_b79k), a local checkpoint file, or 'random'.")(func)
    func = click.option(
        "--model", help="open_clip model: an architecture (ViT-B-32), hf-hub:ORG/REPO, or a model folder. Default: the bundled demo model."
    )(func)
    return func


def query_model(spec: dict[str, Any], *, model: str | None, pretrained: str | None, threads: int | None,
                device: str) -> ModelConfig:
    """The model to query an index with: ``--model``/``--pretrained`` when given, else the one it was built with."""
    from indexer.config import ModelConfig

    if model:
        return ModelConfig(name=model, pretrained=pretrained, threads=threads, device=device)
    return ModelConfig(name=spec.get("name"), pretrained=spec.get("pretrained"), threads=threads, device=device)
