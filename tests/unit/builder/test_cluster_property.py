"""Property: no sequence of spec edits, validations, promotions, rollbacks, supersedes, approvals and
operator restarts makes KubeRay build an undeclared second Ray cluster or leave a change unapplied.

Drives the real `rollout.decide`, `builder.cluster_plan` and RayService builder through
`cluster_driver.Driver`, which feeds every RayService to the KubeRay stand-in's rules.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slm_operator.builder.worker_groups import worker_pod_settings
from tests.unit.builder.cluster_driver import Driver
from tests.unit.rollout.helpers import live, validation

EDITS: dict[str, list[Any]] = {
    "source": ["tiny://good", "tiny://bad", "file:///models/c"],
    "engine": [{}, {"max_num_seqs": 8}, {"max_num_seqs": 32}],
    "gpus": [0, 1, 2],
    "memory": ["2Gi", "4Gi"],
    "tolerations": [[], [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]],
    "node_selector": [{}, {"pool": "b"}],
    "adapters": [[], [{"name": "a1", "source": "pvc://adapters/a1"}]],
    "image": ["ghcr.io/slm-dev/slm-serving:0.1.0", "ghcr.io/slm-dev/slm-serving:0.2.0"],
    "ray_version": ["2.60.0", "2.61.0"],
}


def _edit(document: dict[str, Any], what: str, value: Any) -> None:
    spec = document["spec"]
    value = copy.deepcopy(value)
    if what == "source":
        spec["model"]["source"] = value
    elif what == "engine":
        spec["model"]["engineArgs"] = {"enforce_eager": True, **value}
    elif what == "gpus":
        spec["resources"]["gpusPerReplica"] = value
    elif what == "memory":
        spec["resources"]["memory"] = value
    elif what == "tolerations":
        spec["resources"]["tolerations"] = value
    elif what == "node_selector":
        spec["resources"]["nodeSelector"] = value
    elif what == "adapters":
        spec["adapters"] = value
    elif what == "image":
        spec["rayImage"] = value
    else:
        spec["rayVersion"] = value


STEP = st.one_of(
    st.tuples(st.just("edit"), st.sampled_from(sorted(EDITS)), st.integers(0, 2)),
    st.tuples(st.sampled_from(["pass", "fail", "live", "promote", "abort", "restart", "approve", "tick"])),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=25), automatic=st.booleans())
def test_no_undeclared_cluster_and_no_dropped_change(steps: list[tuple[Any, ...]], automatic: bool) -> None:
    run = Driver()
    run.spec["clusterUpgrade"] = {"approval": "Automatic" if automatic else "Manual"}
    run.step()
    for step in steps:
        status = run.status
        assert status is not None
        canary, stable = status.canary_revision, status.stable_revision
        if step[0] == "edit":
            values = EDITS[step[1]]
            _edit(run.document, step[1], values[step[2] % len(values)])
            run.edited()
            run.step()
        elif step[0] in ("pass", "fail") and canary is not None:
            run.step(validation=validation(canary, stable, wrong=0 if step[0] == "pass" else 4))
        elif step[0] == "live" and canary is not None:
            run.step(live=live(canary))
        elif step[0] in ("promote", "abort"):
            run.step(command=step[0])
        elif step[0] == "restart":
            run.restart()
            run.step()
        elif step[0] == "approve" and status.cluster and status.cluster.pending_upgrade:
            run.approval = status.cluster.pending_upgrade.id
            run.step()
        else:
            run.step()
    assert run.kuberay.violations == []
    assert run.kuberay.clusters_built == 1 + run.declared_upgrades
    status = run.status
    assert status is not None and status.cluster is not None
    groups = run.groups()
    assert [g.name for g in status.cluster.worker_groups] == groups
    for revision in status.revisions:  # every live revision has a group with its pod settings
        pod = worker_pod_settings(revision.template)
        assert any(g.pod == pod and g.name in groups for g in status.cluster.worker_groups), revision.name
