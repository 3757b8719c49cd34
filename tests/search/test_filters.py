import pytest
from sqlalchemy.dialects import sqlite

from indexer.errors import QueryError
from search.filters import compile_where, parse_where


def sql(clauses):
    return [str(c.compile(dialect=sqlite.dialect())) for c in clauses]


def test_compile_uses_bound_parameters_only():
    clauses = compile_where({"category": "shoes'; DROP TABLE products; --", "price": {"lt": 50, "gte": 10},
                             "brand": {"in": ["A", "B"]}, "color": {"ne": "red"}}, attribute_fields={"color"})
    text = " ".join(sql(clauses))
    assert "DROP" not in text and "shoes" not in text and "red" not in text
    assert text.count("?") >= 5 and "POSTCOMPILE_brand" in text  # the list is bound at execution


@pytest.mark.parametrize("where, message", [
    ({"colour": "red"}, "unknown filter field 'colour'"),
    ({"price": {"approx": 3}}, "unknown operator 'approx'"),
    ({"price": {"lt": "cheap"}}, "needs a number"),
    ({"brand": {"in": []}}, "non-empty list"),
    ({"brand": {"eq": {"nested": 1}}}, "string, number or boolean"),
    ({"price": {"lt": float("nan")}}, "finite"),
])
def test_bad_filters_name_the_field(where, message):
    with pytest.raises(QueryError, match=message):
        compile_where(where, attribute_fields={"color"})


def test_parse_cli_expressions():
    assert parse_where(["category=shoes", "price<50", "price>=10", "brand=A,B", "color!=red"]) == {
        "category": {"eq": "shoes"}, "price": {"lt": 50, "gte": 10}, "brand": {"in": ["A", "B"]}, "color": {"ne": "red"},
    }
    assert parse_where(['{"price": {"lte": 9.5}, "brand": "X"}']) == {"price": {"lte": 9.5}, "brand": {"eq": "X"}}
    with pytest.raises(QueryError, match="FIELD OP VALUE"):
        parse_where(["price is cheap"])
    with pytest.raises(QueryError, match="invalid JSON"):
        parse_where(["{bad"])
