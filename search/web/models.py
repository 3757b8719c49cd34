"""Request and error bodies of the HTTP API (pydantic models) and the refine-text syntax.

Numbers are JSON numbers, not booleans (``"k": true`` is refused, not read as 1); text must be valid
Unicode (a lone ``\\ud800`` escape is refused with the field's name); weights stay within
``MAX_WEIGHT`` so float32 arithmetic never overflows; a ``vector`` is 1 to ``MAX_VECTOR_DIMS`` finite numbers,
not all zeros (its dimension is checked against the index's model by the engine: 422 too).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from indexer.catalog import encodable
from indexer.errors import QueryError

from search.business import parse_boost
from search.query import MAX_VECTOR_DIMS, MAX_WEIGHT

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


def _direction(value: list[float]) -> list[float]:
    if not any(value):
        raise ValueError("a vector must not be all zeros")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Number = Annotated[float, BeforeValidator(_not_bool)]
Text = Annotated[str, AfterValidator(_unicode)]
Vector = Annotated[list[Annotated[Number, Field(allow_inf_nan=False)]],
                   Field(min_length=1, max_length=MAX_VECTOR_DIMS), AfterValidator(_direction)]
VECTOR_HELP = "A precomputed query vector of the index model's dimension (finite numbers, not all zeros; scaled to unit length)"


class Weights(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Number = Field(1.0, allow_inf_nan=False, ge=-MAX_WEIGHT, le=MAX_WEIGHT)
    image: Number = Field(1.0, allow_inf_nan=False, ge=-MAX_WEIGHT, le=MAX_WEIGHT)
    vector: Number = Field(1.0, allow_inf_nan=False, ge=-MAX_WEIGHT, le=MAX_WEIGHT)


class TermIn(BaseModel):
    """Exactly one of ``text`` (plain), ``image`` (base64 or a data: URL), ``product`` (an id) or ``vector``
    (a precomputed query vector), weighted."""

    model_config = ConfigDict(extra="forbid")
    text: Text | None = Field(None, max_length=2000)
    image: str | None = None
    product: Text | None = Field(None, max_length=256)
    vector: Vector | None = Field(None, description=VECTOR_HELP)
    weight: Number = Field(1.0, allow_inf_nan=False, ge=-MAX_WEIGHT, le=MAX_WEIGHT)

    @model_validator(mode="after")
    def _one_kind(self) -> TermIn:
        if sum(v is not None for v in (self.text, self.image, self.product, self.vector)) != 1:
            raise ValueError("a term takes exactly one of text, image, product, vector")
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
    sort: Text | None = Field(None, max_length=200, description='Order the most relevant hits by a field instead of by '
                              'score: "price", or a numeric attribute; "-popularity" for descending')
    boost: dict[Text, Annotated[Number, Field(allow_inf_nan=False)]] | None = Field(
        None, max_length=16, description='Business boosts: {"margin": 0.5} adds 0.5 x the margin\'s z-score among the '
        'candidates to each score (a form takes JSON or margin=0.5,popularity=0.2)')
    in_stock: bool | None = Field(None, description="Only products whose stock field is above 0")

    @field_validator("where", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:  # the form and query string carry it as JSON text
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON ({exc.msg})") from None

    @field_validator("boost", mode="before")
    @classmethod
    def _boost_text(cls, value: Any) -> Any:  # the form carries it as JSON or FIELD=WEIGHT,... text
        if not isinstance(value, str):
            return value
        try:
            return parse_boost([value]) if value.strip() else None
        except QueryError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("facets", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


class SearchIn(PageIn):
    """``POST /search``: text (refine syntax), an image and/or a vector, weighted terms, filters, paging, facets."""

    text: Text | None = Field(None, max_length=2000, description='Refine syntax: red dress -striped -"v neck"')
    image: str | None = Field(None, description="A photo as base64 or a data: URL")
    vector: Vector | None = Field(None, description=VECTOR_HELP + "; weighted by weights.vector")
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


class SearchOut(BaseModel):
    """A page of hits (every search route answers this shape)."""

    model_config = ConfigDict(extra="allow")
    query: list[dict[str, Any]] = Field(description="The terms as understood: kind, value (a photo as \"photo\"), weight")
    hits: list[dict[str, Any]] = Field(description="rank (1-based, counting the offset), product_id, score, scores, matched, image, product")
    k: int
    offset: int
    has_more: bool
    facets: dict[str, Any]
    facet_depth: int = Field(description="How many top results the facets counted")
    rerank: dict[str, Any]
    timings_ms: dict[str, float]
    query_id: str | None = Field(None, description="Only when the server logs searches (vitrina serve --log): "
                                 "send it with POST /events to report a click, add-to-cart or purchase of a hit")
