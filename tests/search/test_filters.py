import pytest
from sqlalchemy.dialects import sqlite

from conftest import BOTH_DATABASES, database_for
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


@pytest.fixture(params=BOTH_DATABASES)
def database(request):
    return database_for(request)


FILTERS = [
    {"price": {"lt": 15}}, {"price": {"gte": 12, "lte": 20}}, {"category": "circle"}, {"brand": {"in": ["Brand1", "Brand3"]}},
    {"brand": {"ne": "Brand1"}}, {"color": "red"}, {"color": {"in": ["green", "blue"]}, "price": {"gt": 11}},
    {"color": {"ne": "red"}}, {"id": {"in": ["P001", "P007", "nope"]}},
]


def test_filters_select_the_same_products_on_both_backends(built_index):
    """Each filter, run by the database (SQLite or PostgreSQL), selects exactly what evaluating it on the stored
    rows in Python selects."""
    from indexer.store.reader import IndexStore

    def holds(product, field, condition):
        value = product["attributes"].get(field) if field not in product else product[field]
        op, wanted = next(iter(condition.items())) if isinstance(condition, dict) else ("eq", condition)
        if op == "in":
            return value in wanted
        if op == "ne":
            return value != wanted
        if op == "eq":
            return value == wanted
        if value is None:
            return False
        return {"lt": value < wanted, "lte": value <= wanted, "gt": value > wanted, "gte": value >= wanted}[op]

    def matches(product, where):
        return all(holds(product, field, {op: v}) if isinstance(cond, dict) else holds(product, field, cond)
                   for field, cond in where.items() for op, v in (cond.items() if isinstance(cond, dict) else [("eq", cond)]))

    with IndexStore.open(built_index) as store:
        everything = store.products(store.product_pk_array().tolist())
        for where in FILTERS:
            allowed = store.allowed_products(compile_where(where, attribute_fields=set(store.attribute_fields())))
            expected = sorted(pk for pk, product in everything.items() if matches(product, where))
            assert allowed.tolist() == expected and 0 < len(expected) < len(everything), where
