"""Request bodies of the HTTP API (pydantic models) and the refine-text syntax."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_TOKEN = re.compile(r'([-\u2212]?)(?:"([^"]*)"|(\S+))')


def parse_refine(text: str) -> tuple[str, list[str]]:
    """``'but in red -striped -"v neck"'`` → ``("but in red", ["striped", "v neck"])``."""
    positive: list[str] = []
    negative: list[str] = []
    for sign, quoted, word in _TOKEN.findall(text):
        value = (quoted or word.strip('"')).lstrip("-\u2212" if sign else "").strip()
        if value.strip("-\u2212"):
            (negative if sign else positive).append(value)
    return " ".join(positive), negative


class Weights(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: float = Field(1.0, allow_inf_nan=False)
    image: float = Field(1.0, allow_inf_nan=False)


class TermIn(BaseModel):
    """Exactly one of ``text`` (plain), ``image`` (base64 or a data: URL) or ``product`` (an id), weighted."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, max_length=2000)
    image: str | None = None
    product: str | None = None
    weight: float = Field(1.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_kind(self) -> TermIn:
        if sum(v is not None for v in (self.text, self.image, self.product)) != 1:
            raise ValueError("a term takes exactly one of text, image, product")
        return self


class PageIn(BaseModel):
    """Filters, paging, facets and scoring options of every search."""

    model_config = ConfigDict(extra="forbid")
    where: dict[str, Any] | None = Field(None, description='Filters: {"category": "shoes", "price": {"lt": 50}}')
    k: int = Field(10, ge=1, description="Hits per page")
    offset: int = Field(0, ge=0)
    image_share: float | None = Field(None, ge=0, le=1, description="How much product photos count against product text")
    facets: list[str] = Field(default_factory=list, description="Fields counted over the top results: category, brand, price...")
    rerank: bool | None = Field(None, description="Re-rank on/off (default: the engine's); ignored by an engine without it")

    @field_validator("where", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:  # the form and query string carry it as JSON text
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON ({exc.msg})") from None

    @field_validator("facets", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


class SearchIn(PageIn):
    """``POST /search``: text (refine syntax) and/or an image, weighted terms, filters, paging, facets."""

    text: str | None = Field(None, max_length=2000, description='Refine syntax: red dress -striped -"v neck"')
    image: str | None = Field(None, description="A photo as base64 or a data: URL")
    weights: Weights = Field(default_factory=Weights)  # type: ignore[arg-type]  # pydantic's Field overloads infer Never for a model class
    terms: list[TermIn] = Field(default_factory=list, max_length=64)
    exclude: list[str] = Field(default_factory=list, max_length=1000, description="Product ids to leave out")


class UploadIn(PageIn):
    """The fields of ``POST /search/image`` beside the ``photo`` file; image_share defaults to the engine's (photo terms: ``photo_image_share``)."""

    text: str | None = Field(None, max_length=2000, description="Optional refine text: but in red -striped")
    image_weight: float | None = Field(None, ge=0, le=1, description="Photo weight 0..1; the text gets 1 minus it")
