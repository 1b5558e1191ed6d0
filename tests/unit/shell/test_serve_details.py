"""Reading revisions' state and replicas out of Serve's `ServeInstanceDetails` (both shells use it)."""

from __future__ import annotations

from slm_operator.serve_details import RevisionReplicas, read_revisions

DETAILS = {
    "applications": {
        "router": {"status": "RUNNING"},
        "rev-aaa": {
            "status": "RUNNING",
            "deployments": {
                "LLMEngine": {"target_num_replicas": 3, "replicas": [{"state": "RUNNING"}, {"state": "STARTING"}]}
            },
        },
        "rev-bbb": {
            "status": "DEPLOYING",
            "deployments": {"LLMEngine": {"target_num_replicas": 1, "replicas": [{"state": "STARTING"}]}},
        },
        "rev-zero": {"status": "RUNNING", "deployments": {"LLMEngine": {"target_num_replicas": 0, "replicas": []}}},
    }
}


def test_running_apps_running_replicas_and_targets_per_revision() -> None:
    assert read_revisions(DETAILS, ["aaa", "bbb", "zero", "gone"]) == RevisionReplicas(
        running=frozenset({"aaa", "zero"}),
        ready={"aaa": 1, "bbb": 0, "zero": 0, "gone": 0},
        desired={"aaa": 3, "bbb": 1, "zero": 0},  # "gone" has no target: status keeps its last one
    )


def test_no_serve_instance_yet() -> None:
    assert read_revisions({}, ["aaa"]) == RevisionReplicas(ready={"aaa": 0})
    assert read_revisions({"applications": None}, []) == RevisionReplicas()
