"""KubeRay's cluster-hash rule (`builder.cluster_change`), table-driven from the cases its own
controller distinguishes (rayservice_controller.go v1.5 to v1.7, `isClusterSpecHashEqual`)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from slm_operator.builder.cluster_change import (
    ClusterChange,
    applies_new_cluster,
    cluster_spec_hash,
    decide_cluster_change,
    ignored_changes,
)

Config = dict[str, Any]


def _group(name: str, gpus: int = 1) -> Config:
    return {
        "groupName": name,
        "replicas": 1,
        "minReplicas": 0,
        "maxReplicas": 5,
        "rayStartParams": {},
        "template": {
            "spec": {
                "containers": [
                    {"name": "ray-worker", "image": "img:1", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
                ]
            }
        },
    }


RUNNING: Config = {
    "rayVersion": "2.60.0",
    "headGroupSpec": {
        "rayStartParams": {"num-cpus": "0"},
        "template": {"spec": {"containers": [{"name": "ray-head", "image": "img:1"}]}},
    },
    "workerGroupSpecs": [_group("gpu-a"), _group("gpu-b", 2)],
}


def _edit(change: Callable[[Config], object]) -> Config:
    config = copy.deepcopy(RUNNING)
    change(config)
    return config


def _worker(config: Config, index: int) -> Config:
    return config["workerGroupSpecs"][index]  # type: ignore[no-any-return]


def _pod(config: Config, index: int | None) -> Config:
    """The pod spec of worker group `index`, or of the head for None."""
    group = config["headGroupSpec"] if index is None else _worker(config, index)
    return group["template"]["spec"]  # type: ignore[no-any-return]


def _groups(config: Config) -> list[Config]:
    return config["workerGroupSpecs"]  # type: ignore[no-any-return]


NOTHING, IN_PLACE, NEW = ClusterChange.NOTHING, ClusterChange.UPDATE_IN_PLACE, ClusterChange.NEW_CLUSTER
CASES: list[tuple[str, Callable[[Config], object], ClusterChange]] = [
    ("equal", lambda c: None, NOTHING),
    ("replicas only", lambda c: _worker(c, 0).update(replicas=4), NOTHING),
    ("min and max replicas", lambda c: _worker(c, 1).update(minReplicas=1, maxReplicas=9), NOTHING),
    ("workers to delete", lambda c: _worker(c, 0).update(scaleStrategy={"workersToDelete": ["p"]}), NOTHING),
    ("worker tolerations", lambda c: _pod(c, 0).update(tolerations=[{"key": "k"}]), NOTHING),
    ("head tolerations", lambda c: _pod(c, None).update(tolerations=[{"key": "k"}]), NOTHING),
    ("suspend", lambda c: c.update(suspend=True), NOTHING),
    ("empty rayStartParams dropped", lambda c: _worker(c, 0).pop("rayStartParams"), NOTHING),
    ("appended group", lambda c: _groups(c).append(_group("gpu-c", 4)), IN_PLACE),
    ("two appended groups", lambda c: _groups(c).extend([_group("c"), _group("d")]), IN_PLACE),
    ("appended and replicas", lambda c: (_groups(c).append(_group("c")), _worker(c, 0).update(replicas=0)), IN_PLACE),
    ("removed last group", lambda c: _groups(c).pop(), NEW),
    ("removed first group", lambda c: _groups(c).pop(0), NEW),
    ("reordered groups", lambda c: _groups(c).reverse(), NEW),
    ("group inserted first", lambda c: _groups(c).insert(0, _group("gpu-c")), NEW),
    ("changed template", lambda c: _pod(c, 0).update(nodeSelector={"pool": "a"}), NEW),
    ("changed and appended", lambda c: (_pod(c, 0).update(hostIPC=True), _groups(c).append(_group("c"))), NEW),
    ("changed head", lambda c: c["headGroupSpec"]["rayStartParams"].update({"num-cpus": "1"}), NEW),
    ("changed image", lambda c: _pod(c, 1)["containers"][0].update(image="img:2"), NEW),
    ("changed head image", lambda c: _pod(c, None)["containers"][0].update(image="img:2"), NEW),
    ("changed rayVersion", lambda c: c.update(rayVersion="2.61.0"), NEW),
    ("renamed group", lambda c: _worker(c, 0).update(groupName="gpu-z"), NEW),
]


@pytest.mark.parametrize(("change", "expected"), [(c, e) for _, c, e in CASES], ids=[n for n, _, _ in CASES])
def test_kuberay_decision(change: Callable[[Config], object], expected: ClusterChange) -> None:
    assert decide_cluster_change(RUNNING, _edit(change)) is expected


def test_hash_ignores_key_order_and_replicas() -> None:
    reordered = dict(reversed(list(RUNNING.items())))
    assert cluster_spec_hash(reordered) == cluster_spec_hash(RUNNING)
    assert cluster_spec_hash(_edit(lambda c: _worker(c, 0).update(replicas=7))) == cluster_spec_hash(RUNNING)
    assert cluster_spec_hash(_edit(lambda c: c.update(rayVersion="9.9.9"))) != cluster_spec_hash(RUNNING)


def test_ignored_changes_are_the_muted_fields_kuberay_never_applies_alone() -> None:
    edited = _edit(
        lambda c: (
            _worker(c, 1).update(maxReplicas=9, replicas=3),
            _pod(c, 0).update(tolerations=[{"key": "gpu"}]),
        )
    )
    assert ignored_changes(RUNNING, edited) == [
        "workerGroupSpecs[0].template.spec.tolerations",
        "workerGroupSpecs[1].maxReplicas",
    ]
    appended = copy.deepcopy(edited)
    appended["workerGroupSpecs"].append(_group("c"))
    assert ignored_changes(RUNNING, appended) == []  # an in-place update carries the whole spec


@pytest.mark.parametrize(
    ("strategy", "env", "expected"),
    [
        ({"type": "NewCluster"}, False, True),
        ({"type": "None"}, True, False),
        (None, True, True),
        (None, False, False),
        ({}, False, False),
    ],
)
def test_applies_new_cluster_follows_upgrade_strategy_then_env(
    strategy: dict[str, str] | None, env: bool, expected: bool
) -> None:
    assert applies_new_cluster(strategy, zero_downtime_env=env) is expected
