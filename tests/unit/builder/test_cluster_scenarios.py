"""Rollout scenarios and KubeRay's decision at each transition (the kinds of change in docs/rollout.md)."""

from __future__ import annotations

from slm_operator.api.models import SLMDeploymentSpec, SLMDeploymentStatus
from slm_operator.builder.cluster_change import ClusterChange
from slm_operator.builder.cluster_plan import ClusterPlan, UpgradeReason, plan_cluster
from slm_operator.status import status_document
from tests.unit.builder.cluster_driver import Driver
from tests.unit.rollout.helpers import conditions, live, validation

NOTHING, IN_PLACE, NEW = ClusterChange.NOTHING, ClusterChange.UPDATE_IN_PLACE, ClusterChange.NEW_CLUSTER


def _started() -> Driver:
    run = Driver()
    assert run.step() is NEW  # creation
    return run


def _canary(run: Driver) -> str:
    assert run.status is not None and run.status.canary_revision is not None
    return run.status.canary_revision


def _stable(run: Driver) -> str:
    assert run.status is not None and run.status.stable_revision is not None
    return run.status.stable_revision


def _pass(run: Driver) -> ClusterChange | None:
    return run.step(validation=validation(_canary(run), _stable(run)))


def test_shape_change_promoted_keeps_the_old_group_at_zero() -> None:
    run = _started()
    run.step()  # Ready
    (first,) = run.groups()
    run.spec["resources"]["memory"] = "4Gi"
    run.edited()
    assert run.step() is IN_PLACE  # the canary's group is appended
    assert run.groups()[0] == first and len(run.groups()) == 2
    assert _pass(run) is None  # validated: traffic step 1, serveConfigV2 only
    assert run.step(command="promote") is None
    run.step()  # the old revision drains away
    assert run.status is not None and len(run.status.revisions) == 1
    assert run.groups()[0] == first and run.replicas() == [0, 1]
    assert run.kuberay.violations == [] and run.kuberay.clusters_built == 1


def test_shape_change_rolled_back_then_retried_reuses_its_group() -> None:
    run = _started()
    run.step()
    run.spec["resources"]["gpusPerReplica"] = 1
    run.edited()
    assert run.step() is IN_PLACE
    assert run.step(validation=validation(_canary(run), _stable(run), wrong=4)) is None  # rolled back
    run.step()
    assert run.replicas() == [1, 0]
    run.spec["model"]["engineArgs"]["max_num_seqs"] = 8
    run.edited()
    assert run.step() is None  # same pod settings as the rolled-back canary: its group again
    assert run.replicas() == [1, 1] and run.kuberay.violations == []


def test_tolerations_edit_is_a_canary_in_a_new_group() -> None:
    run = _started()
    run.step()
    run.spec["resources"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    run.edited()
    assert run.step() is IN_PLACE
    assert _canary(run) != _stable(run)
    (new_group,) = run.rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"][1:]
    assert new_group["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert run.kuberay.violations == []


def test_image_bump_waits_for_approval_then_declares_a_new_cluster() -> None:
    run = _started()
    run.step()
    run.spec["rayImage"] = "ghcr.io/slm-dev/slm-serving:0.2.0"
    run.edited()
    assert run.step() is None  # nothing reaches KubeRay yet
    assert run.plan is not None and [e.reason for e in run.plan.events] == ["ClusterUpgradePending"]
    assert run.status is not None and run.status.cluster is not None
    pending = run.status.cluster.pending_upgrade
    assert pending is not None and pending.extra_gpus == 0  # tiny runs on CPU
    assert conditions(run.status)["ClusterUpgrade"] == ("True", UpgradeReason.AWAITING_APPROVAL)
    run.step()
    assert run.plan.events == ()  # posted once
    run.approval = pending.id
    assert run.step() is NEW
    assert run.plan.approval_used and run.approval is None
    assert run.rayservice["metadata"]["annotations"]["slm.dev/cluster-upgrade"] == pending.id
    assert conditions(run.status)["ClusterUpgrade"] == ("True", UpgradeReason.UPGRADING)
    run.step()
    assert conditions(run.status)["ClusterUpgrade"] == ("False", UpgradeReason.UPGRADED)
    assert run.kuberay.violations == [] and run.kuberay.clusters_built == 2


def test_a_cluster_from_before_the_front_end_choice_keeps_its_pods_until_the_upgrade_is_approved() -> None:
    """An operator upgrade: the cluster was built with Serve's proxy and its status names no front end;
    the spec now defaults to HAProxy. Nothing reaches KubeRay until the upgrade is approved."""
    run = Driver()
    run.spec["frontEnd"] = "ServeProxy"
    assert run.step() is NEW
    run.step()
    head = run.rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "env" not in head  # the pod template of a cluster built before the choice
    del run.spec["frontEnd"]
    assert run.status is not None and run.status.cluster is not None
    document = status_document(run.status)
    del document["cluster"]["frontEnd"]  # as the older operator wrote it
    run.status = SLMDeploymentStatus.model_validate(document)
    assert run.step() is None
    assert run.status.cluster is not None and run.status.cluster.pending_upgrade is not None
    pending = run.status.cluster.pending_upgrade
    assert pending.reason == "frontEnd ServeProxy → HAProxy", pending
    assert conditions(run.status)["ClusterUpgrade"] == ("True", UpgradeReason.AWAITING_APPROVAL)
    run.approval = pending.id
    assert run.step() is NEW
    config = run.rayservice["spec"]["rayClusterConfig"]
    containers = [config["headGroupSpec"]["template"]["spec"]["containers"][0]] + [
        g["template"]["spec"]["containers"][0] for g in config["workerGroupSpecs"]
    ]
    for container in containers:
        assert {"name": "RAY_SERVE_ENABLE_HA_PROXY", "value": "1"} in container["env"], container
    assert run.kuberay.violations == [] and run.kuberay.clusters_built == 2


def test_automatic_upgrade_waits_for_the_rollout_and_compacts_the_groups() -> None:
    run = _started()
    run.spec["clusterUpgrade"] = {"approval": "Automatic"}
    run.step()
    run.spec["resources"]["memory"] = "4Gi"
    run.edited()
    assert run.step() is IN_PLACE
    run.step(validation=validation(_canary(run), _stable(run), wrong=4))  # rolled back: its group stays
    run.step()
    assert run.replicas() == [1, 0]
    run.spec["resources"]["memory"] = "8Gi"
    run.edited()
    assert run.step() is IN_PLACE  # another canary, another group
    run.spec["rayImage"] = "ghcr.io/slm-dev/slm-serving:0.2.0"
    run.edited()  # not a new revision: the 8Gi canary goes on
    assert run.step() is None
    assert run.status is not None
    assert conditions(run.status)["ClusterUpgrade"] == ("True", UpgradeReason.WAITING_FOR_ROLLOUT)
    _pass(run)
    run.step(live=live(_canary(run)))
    assert run.step(command="promote") is NEW  # the canary is gone: the upgrade starts in the same pass
    assert run.plan is not None and [e.reason for e in run.plan.events] == ["ClusterUpgradeStarted"]
    live_groups = len({(r.template.memory) for r in run.status.revisions})
    assert len(run.groups()) == live_groups < 3  # compacted: the rolled-back canary's group is gone
    assert run.kuberay.violations == [] and run.kuberay.clusters_built == 2


def test_restart_keeps_the_group_order() -> None:
    run = _started()
    run.step()
    run.spec["resources"]["memory"] = "4Gi"
    run.edited()
    run.step()
    _pass(run)
    run.step(command="promote")
    run.step()
    before = run.groups()
    run.restart()
    assert run.step() is None and run.groups() == before


def test_upgrading_holds_while_kuberay_reports_a_pending_cluster() -> None:
    run = _started()
    run.spec["clusterUpgrade"] = {"approval": "Automatic"}
    run.spec["rayVersion"] = "2.61.0"
    run.edited()
    assert run.step() is NEW
    assert run.status is not None
    spec = SLMDeploymentSpec.model_validate(run.spec)

    def plan(status: SLMDeploymentStatus, upgrading: bool) -> ClusterPlan:
        return plan_cluster(
            spec,
            status,
            name="tiny",
            approval=None,
            kuberay_upgrading=upgrading,
            now=run.now,
            generation=run.generation,
        )

    held = plan(run.status, True)
    assert conditions(held.status)["ClusterUpgrade"] == ("True", UpgradeReason.UPGRADING) and held.events == ()
    done = plan(held.status, False)
    assert conditions(done.status)["ClusterUpgrade"] == ("False", UpgradeReason.UPGRADED)
    assert [e.reason for e in done.events] == ["ClusterUpgraded"]
