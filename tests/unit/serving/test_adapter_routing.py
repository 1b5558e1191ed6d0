"""Adapter version choice (`routing.choose_lora`) and the engine's load/unload plan (`adapters.plan_adapter_sync`)."""

from __future__ import annotations

import pytest

from slm_serving.adapters import plan_adapter_sync
from slm_serving.config import AdapterRoute, AdapterVersionRoute
from slm_serving.routing import RequestError, build_adapter_table, choose_lora


def _adapter(name: str, **weights: int) -> AdapterRoute:
    versions = tuple(AdapterVersionRoute(version=v, source=f"s3://{name}/{v}", weight=w) for v, w in weights.items())
    return AdapterRoute(name=name, versions=versions)


TABLE = build_adapter_table((_adapter("sql", v1=80, v2=20), _adapter("new", v1=0)))


@pytest.mark.parametrize(
    ("model", "draw", "chosen"),
    [
        (None, 0.5, None),
        ("base", 0.5, None),
        ("sql", 0.0, "sql@v1"),
        ("sql", 0.79, "sql@v1"),
        ("sql", 0.8, "sql@v2"),
        ("sql", 0.999, "sql@v2"),
        ("sql@v2", 0.0, "sql@v2"),
        ("new@v1", 0.0, "new@v1"),
    ],
)
def test_choose_lora(model: str | None, draw: float, chosen: str | None) -> None:
    assert choose_lora(model, TABLE, draw) == chosen


def test_an_adapter_whose_versions_all_have_weight_zero_is_not_served() -> None:
    error = choose_lora("new", TABLE, 0.5)
    assert isinstance(error, RequestError) and error.status == 503


def test_table_names_every_loaded_version() -> None:
    assert TABLE.names == ("sql", "new")
    assert TABLE.engine_names == {"sql@v1", "sql@v2", "new@v1"}


def test_sync_loads_what_is_missing_and_unloads_what_is_gone_but_never_retries_a_failure() -> None:
    plan = plan_adapter_sync((_adapter("sql", v2=100, v3=0),), loaded={"sql@v1", "sql@v2"}, failed={"sql@v3"})
    assert dict(plan.load) == {}
    assert plan.unload == {"sql@v1"}
    plan = plan_adapter_sync((_adapter("sql", v1=100, v4=0),), loaded={"sql@v1"}, failed=())
    assert dict(plan.load) == {"sql@v4": "s3://sql/v4"} and plan.unload == frozenset()
