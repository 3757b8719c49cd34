"""Request and error bodies of the HTTP API (pydantic models) and the refine-text syntax.

Numbers are JSON numbers, not booleans (``"k": true`` is refused, not read as 1); text must be valid
Unicode (a lone ``\\ud800`` escape is refused with the field's name); weights stay within
``MAX_WEIGHT`` so float32 arithmetic never overflows.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from indexer.catalog import encodable

from search.query import MAX_WEIGHT

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


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a number is expected, not true/false")
    return value


def _unicode(value: str) -> str:
    if not encodable(value):
        raise ValueError("not valid Unicode text (a lone surrogate)")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Number = Annotated[float, BeforeValidator(_not_bool)]
Text = Annotated[str, AfterValidator(_unicode)]


class Weights(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Number = Field(1.0, allow_inf_nan=False, ge=-MAX_WEIGHT, le=MAX_WEIGHT)
    image: Number = Field(1.0, allow_inf_nan=False, ge=-MAX_WEIGHT, le=MAX_WEIGHT)


class TermIn(BaseModel):
    """Exactly one of ``text`` (plain), ``image`` (base64 or a data: URL) or ``product`` (an id), weighted."""

    model_config = ConfigDict(extra="forbid")
    text: Text | None = Field(None, max_length=2000)
    image: str | None = None
    product: Text | None = Field(None, max_length=256)
    weight: Number = Field(1.0, allow_inf_nan=False, ge=-MAX_WEIGHT, le=MAX_WEIGHT)

    @model_validator(mode="after")
    def _one_kind(self) -> TermIn:
        if sum(v is not None for v in (self.text, self.image, self.product)) != 1:
            raise ValueError("a term takes exactly one of text, image, product")
        return self


class PageIn(BaseModel):
    """Filters, paging, facets and scoring options of every search."""

    model_config = ConfigDict(extra="forbid")
    where: dict[str, Any] | None = Field(None, description='Filters: {"category": "shoes", "price": {"lt": 50}}')
    k: Int = Field(10, ge=1, description="Hits per page")
    offset: Int = Field(0, ge=0, description="Hits skipped (offset + k is limited: see the maximum of offset)")
    image_share: Number | None = Field(None, ge=0, le=1, description="How much product photos count against product text")
    facets: list[Text] = Field(default_factory=list, max_length=32,
                               description="Fields counted over the top results: category, brand, price...")
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

    text: Text | None = Field(None, max_length=2000, description='Refine syntax: red dress -striped -"v neck"')
    image: str | None = Field(None, description="A photo as base64 or a data: URL")
    weights: Weights = Field(default_factory=Weights)  # type: ignore[arg-type]  # pydantic's Field overloads infer Never for a model class
    terms: list[TermIn] = Field(default_factory=list, max_length=64)
    exclude: list[Text] = Field(default_factory=list, max_length=1000, description="Product ids to leave out")


class UploadIn(PageIn):
    """The fields of ``POST /search/image`` beside the ``photo`` file; image_share defaults to the engine's (photo terms: ``photo_image_share``)."""

    text: Text | None = Field(None, max_length=2000, description="Optional refine text: but in red -striped")
    image_weight: Number | None = Field(None, ge=0, le=1, description="Photo weight 0..1; the text gets 1 minus it")


class ErrorOut(BaseModel):
    """Every error but a validation error: one line saying what is wrong and what to do."""

    detail: str


class ValidationItem(BaseModel):
    type: str
    loc: list[str | int] = Field(description="Where: body / query / form / path, then the field")
    msg: str


class ValidationErrorOut(BaseModel):
    """422: ``detail`` names every bad field in one line; ``errors`` lists them (the input is never echoed)."""

    detail: str
    errors: list[ValidationItem] = Field(default_factory=list)
