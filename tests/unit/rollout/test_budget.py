"""The replica budget split between stable and canary (`builder.revisions.split_replica_budget`).

Invariant from issue 7: canary and stable replicas together never exceed maxReplicas +
maxSurgeReplicas (where that budget can hold both revisions at all: 2 or more).
"""

from __future__ import annotations

import itertools

import pytest

from slm_operator.api.models import AutoscalingSpec
from slm_operator.builder.revisions import ReplicaBounds, split_replica_budget


def split(min_replicas: int, max_replicas: int, surge: int, weight: int) -> tuple[ReplicaBounds, ReplicaBounds]:
    autoscaling = AutoscalingSpec(min_replicas=min_replicas, max_replicas=max_replicas, scale_to_zero=True)
    return split_replica_budget(autoscaling, surge, weight)


@pytest.mark.parametrize(
    ("min_replicas", "max_replicas", "surge", "weight", "stable", "canary"),
    [
        pytest.param(1, 4, 1, 0, (1, 4), (1, 1), id="validating-canary-uses-the-surge"),
        pytest.param(1, 4, 1, 10, (1, 4), (1, 1), id="small-weight-one-canary"),
        pytest.param(2, 4, 1, 50, (2, 3), (1, 2), id="half-stable-keeps-the-surge"),
        pytest.param(2, 4, 1, 100, (1, 1), (2, 4), id="full-weight-stable-shrinks-to-one"),
        pytest.param(1, 4, 0, 0, (1, 3), (1, 1), id="no-surge-stable-gives-one"),
        pytest.param(1, 4, 0, 100, (1, 1), (1, 3), id="no-surge-full-weight"),
        pytest.param(1, 1, 1, 0, (1, 1), (1, 1), id="tiny-example"),
        pytest.param(1, 1, 1, 100, (1, 1), (1, 1), id="tiny-example-full-weight"),
        pytest.param(0, 4, 2, 50, (0, 4), (1, 2), id="scale-to-zero-stable-may-idle-canary-may-not"),
        pytest.param(10, 10, 5, 20, (10, 10), (2, 2), id="min-equals-max"),
    ],
)
def test_split(
    min_replicas: int, max_replicas: int, surge: int, weight: int, stable: tuple[int, int], canary: tuple[int, int]
) -> None:
    assert split(min_replicas, max_replicas, surge, weight) == (ReplicaBounds(*stable), ReplicaBounds(*canary))


CASES = [
    (m, big_m, s) for big_m, s in itertools.product(range(1, 9), range(4)) for m in range(big_m + 1) if big_m + s >= 2
]


@pytest.mark.parametrize(("min_replicas", "max_replicas", "surge"), CASES)
def test_invariants_over_every_weight(min_replicas: int, max_replicas: int, surge: int) -> None:
    previous: tuple[ReplicaBounds, ReplicaBounds] | None = None
    for weight in range(101):
        stable, canary = split(min_replicas, max_replicas, surge, weight)
        assert stable.max_replicas + canary.max_replicas <= max_replicas + surge
        assert stable.max_replicas >= 1 and canary.max_replicas >= 1
        assert canary.min_replicas >= 1, "the canary must answer golden prompts"
        assert stable.min_replicas <= stable.max_replicas and canary.min_replicas <= canary.max_replicas
        assert stable.max_replicas <= max_replicas
        if previous is not None:
            assert canary.max_replicas >= previous[1].max_replicas, "canary grows with its weight"
            assert stable.max_replicas <= previous[0].max_replicas, "stable shrinks as the canary takes traffic"
        previous = (stable, canary)


def test_budget_of_one_cannot_hold_two_revisions() -> None:
    """maxReplicas 1 with maxSurgeReplicas 0 leaves no room for a canary: the split gives each revision
    one replica, over budget by one (a CRD rule should reject this combination)."""
    stable, canary = split(1, 1, 0, 50)
    assert (stable.max_replicas, canary.max_replicas) == (1, 1)
