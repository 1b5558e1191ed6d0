"""Named statuses along a rollout of revision b over revision a, each reached through `decide` itself."""

from __future__ import annotations

from functools import cache

from slm_operator.api.models import SLMDeploymentStatus
from slm_operator.rollout.decide import Observation, decide
from tests.unit.rollout.helpers import REV, SETTINGS, at, live, observe, spec, validation

A, B, C = REV["a"], REV["b"], REV["c"]


def _next(
    version: str,
    status: SLMDeploymentStatus | None,
    observation: Observation,
    generation: int,
    t: float,
    **rollout: object,
) -> SLMDeploymentStatus:
    return decide(
        spec(version, **rollout), status, observation, generation=generation, now=at(t), settings=SETTINGS
    ).status


@cache
def deploying() -> SLMDeploymentStatus:
    """First deploy of a, nothing running yet."""
    return _next("a", None, Observation(), 1, 0)


@cache
def ready() -> SLMDeploymentStatus:
    return _next("a", deploying(), observe(deploying()), 1, 1)


@cache
def started(auto_rollback: bool = True) -> SLMDeploymentStatus:
    """Spec changed to b (generation 2): canary b added at 0 %, not running yet."""
    return _next("b", ready(), observe(ready()), 2, 10, autoRollback=auto_rollback)


@cache
def step0(auto_rollback: bool = True) -> SLMDeploymentStatus:
    """b validated at t=20: traffic step 1 (20 %, held 10 s) from t=20."""
    return _next(
        "b", started(auto_rollback), observe(started(), validation=validation(B, A)), 2, 20, autoRollback=auto_rollback
    )


@cache
def step1() -> SLMDeploymentStatus:
    """Step 1 held 10 s with clean live metrics: b at 100 % from t=31."""
    return _next("b", step0(), observe(step0(), live=live(B)), 2, 31)


@cache
def promoted() -> SLMDeploymentStatus:
    """b promoted at t=40; a drained to 0 %, still listed."""
    return _next("b", step1(), observe(step1(), live=live(B)), 2, 40)


@cache
def rolled_back() -> SLMDeploymentStatus:
    """b failed validation at t=20 (2 of 4 wrong) and was rolled back."""
    return _next("b", started(), observe(started(), validation=validation(B, A, wrong=2)), 2, 20)


@cache
def held() -> SLMDeploymentStatus:
    """Like rolled_back, with autoRollback false: b kept at 0 %, rollout paused."""
    return _next(
        "b", started(False), observe(started(), validation=validation(B, A, wrong=2)), 2, 20, autoRollback=False
    )


@cache
def paused_step0() -> SLMDeploymentStatus:
    return _next("b", step0(), observe(step0(), command="pause"), 2, 22)
