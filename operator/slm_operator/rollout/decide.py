"""The rollout state machine: (spec, generation, status, observations, now) → (next status, actions).

Everything it remembers lives in `SLMDeploymentStatus`, so calling it again after a restart, with the
persisted status and fresh observations, continues where it stopped; calling it twice on the same
input gives the same output. Revisions it serves are `status.revisions`: the stable one, at most one
canary, and revisions being drained (neither stable nor canary: weight 0, removed once the router
runs without them, since calls to a deleted Serve application fail).

A rollout: the canary is added at weight 0 → once running, the golden prompts are sent to it and to
the stable (RunValidation) → the gate (`gate.evaluate_validation`) passes → with `spec.rollout.shadow`,
the shadow phase: live requests copied to the canary, still at 0 %, and its answers compared
(ObserveShadow, `shadow.judge_shadow`) → the spec's traffic steps,
each held `pauseSeconds` and judged on the router's recent requests (`live.compare_live`; a step still not
conclusive `maxWaitSeconds` after its pause fails) → promote. A failure rolls
back (or, with autoRollback false, holds traffic at the stable and waits for a command). A rolled-back
revision is not retried until the spec's generation changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from slm_operator.api.models import (
    ConditionType,
    CostComparison,
    LiveComparison,
    Phase,
    RolloutStatus,
    SLMDeploymentSpec,
    SLMDeploymentStatus,
)
from slm_operator.rollout.actions import (
    ClearCommand,
    EmitEvent,
    ObserveMetrics,
    ObserveShadow,
    RecordQuality,
    RunValidation,
)
from slm_operator.rollout.adapters import adapters_condition, decide_adapters
from slm_operator.rollout.commands import RolloutCommand
from slm_operator.rollout.conditions import is_true, parse_time, remove_condition
from slm_operator.rollout.cost import StepCost, build_cost_comparison
from slm_operator.rollout.gate import evaluate_validation
from slm_operator.rollout.live import LiveSamples, LiveVerdict, compare_live
from slm_operator.rollout.shadow import ShadowWindow, judge_shadow
from slm_operator.rollout.working import Decision, Observation, Reason, RolloutSettings, Working

__all__ = ["Decision", "Observation", "Reason", "RolloutSettings", "decide"]


def decide(
    spec: SLMDeploymentSpec,
    status: SLMDeploymentStatus | None,
    observed: Observation,
    *,
    generation: int,
    now: datetime,
    settings: RolloutSettings | None = None,
) -> Decision:
    """The next status and the actions that get there. Pure and deterministic.

    `generation` is `metadata.generation` of the SLMDeployment; `now` is timezone-aware.
    """
    run = _Decider(spec, status or SLMDeploymentStatus(), observed, generation, now, settings or RolloutSettings())
    run.decide()
    return run.result()


class _Decider(Working):
    """The transitions: which one applies, and what each changes."""

    # ------------------------------------------------------------------ top level

    def decide(self) -> None:
        st = self.status
        if st.stable_revision is None:
            self._deploy_stable(self.desired)
        elif st.canary_revision is not None:
            if self.desired == st.canary_revision:
                self._progress()
            elif self.desired == st.stable_revision:
                self._supersede_to_stable()
            else:
                self._supersede(self.desired)
        elif self.desired != st.stable_revision:
            if self.before.phase in (Phase.PENDING, Phase.DEPLOYING) or self._had(
                ConditionType.DEGRADED, Reason.START_FAILED
            ):
                self._deploy_stable(self.desired)  # nothing served yet: nothing to protect
            elif is_true(st.conditions, ConditionType.DEGRADED, Reason.ROLLED_BACK) and self._same_generation():
                self.message = f"revision {self.desired} was rolled back; change the spec to retry"
                self._quality_check()
            else:
                self._start(self.desired)
        else:
            self._steady()
        self._adapter_rollouts()
        if self.command is not None and not self.command_consumed:
            self._ignore_command("no rollout in progress")

    # ------------------------------------------------------------------ adapters

    def _adapter_rollouts(self) -> None:
        """Adapter rollouts (`rollout.adapters`) and the `AdaptersReady` condition they give."""
        self._decide_adapters()
        condition = adapters_condition(self.status.adapters)
        if condition is None:
            self.status.conditions = remove_condition(self.status.conditions, ConditionType.ADAPTERS_READY)
        else:
            self._condition(ConditionType.ADAPTERS_READY, condition.status, Reason(condition.reason), condition.message)

    def _decide_adapters(self) -> None:
        """Adapter rollouts inside the stable revision, while it runs and no revision rollout is in
        progress (a revision rollout holds them where they are). A new stable revision starts from its
        own template's adapters."""
        st = self.status
        if st.stable_revision != self.before.stable_revision:
            st.adapters = []
        stable = next((r for r in st.revisions if r.name == st.stable_revision), None)
        if stable is None or st.canary_revision is not None or stable.name not in self.observed.running:
            return
        validation = self.spec.rollout.validation
        decision = decide_adapters(
            self.spec.adapters,
            validation.prompts,
            validation,
            self.spec.rollout.steps,
            st.adapters,
            self.observed.adapters,
            self.now_dt,
            revision=stable.name,
            serving={a.name: a.source for a in stable.template.adapters},
        )
        st.adapters = list(decision.statuses)
        self.actions += decision.actions

    # ------------------------------------------------------------------ commands

    def _ignore_command(self, why: str) -> None:
        assert self.command is not None
        self.actions += [
            EmitEvent("Normal", Reason.COMMAND_IGNORED, f"rollout command {self.command.value} ignored: {why}"),
            ClearCommand(),
        ]

    def _new_command(self, rollout: RolloutStatus) -> RolloutCommand | None:
        """The command if not yet acted upon in this rollout (then recorded as acted upon)."""
        if self.command is None:
            return None
        self.command_consumed = True
        self.actions.append(ClearCommand())
        if rollout.last_command == self.command.value:
            return None
        rollout.last_command = self.command.value
        return self.command

    # ------------------------------------------------------------------ no rollout

    def _deploy_stable(self, revision: str) -> None:
        """First deploy, or a replacement while nothing has been served yet: no canary."""
        st = self.status
        if st.stable_revision != revision:
            for entry in st.revisions:
                entry.weight = 0
            st.revisions.insert(0, self._entry(revision, "stable", 100))
            st.stable_revision = revision
            self._event("Normal", Reason.DEPLOYING, f"deploying revision {revision}")
            if self._had(ConditionType.DEGRADED, Reason.START_FAILING, Reason.START_FAILED):  # a new spec starts over
                self._condition(ConditionType.DEGRADED, "False", Reason.DEPLOYING, f"deploying revision {revision}")
        self.message = f"deploying revision {revision}"
        self._check_stable_start()

    def _check_stable_start(self) -> None:
        """Until the stable runs, a failed replica start is the cause shown (one Event per transition:
        failing, then given up); a new spec starts over."""
        st = self.status
        assert st.stable_revision is not None
        if st.stable_revision in self.observed.running:
            if self._had(ConditionType.DEGRADED, Reason.START_FAILING, Reason.START_FAILED):
                self._condition(
                    ConditionType.DEGRADED, "False", Reason.SERVING, f"revision {st.stable_revision} started"
                )
            return
        failure = self.observed.start_failures.get(st.stable_revision)
        if failure is None:
            return
        reason = Reason.START_FAILED if failure.final else Reason.START_FAILING
        message = f"revision {st.stable_revision}: {failure.describe()}"
        if not self._had(ConditionType.DEGRADED, reason):
            self._event("Warning", reason, message)
        self._condition(ConditionType.DEGRADED, "True", reason, message)
        self.message = message

    def _steady(self) -> None:
        st = self.status
        self._check_stable_start()
        if is_true(st.conditions, ConditionType.DEGRADED, Reason.ROLLED_BACK):
            self._condition(ConditionType.DEGRADED, "False", Reason.STABLE_REQUESTED, "spec names the stable revision")
        self._quality_check()

    def _quality_check(self) -> None:
        st = self.status
        assert st.stable_revision is not None
        interval = self.spec.rollout.validation.quality_check_interval_seconds
        if interval == 0 or st.stable_revision not in self.observed.running:
            return
        run = self.observed.validation
        if run is not None and run.revision == st.stable_revision:
            result = evaluate_validation(self.spec.rollout.validation, run, self.now)
            st.last_validation = result
            self.actions.append(RecordQuality(run.revision, result.passed, result.pass_rate))
            if not result.passed:
                self.message = f"quality check of revision {run.revision} failed: {result.reason}"
                if not is_true(st.conditions, ConditionType.DEGRADED, Reason.QUALITY_FAILED):
                    self._event("Warning", Reason.QUALITY_FAILED, result.reason)
                self._condition(ConditionType.DEGRADED, "True", Reason.QUALITY_FAILED, result.reason)
            elif is_true(st.conditions, ConditionType.DEGRADED, Reason.QUALITY_FAILED):
                self._condition(ConditionType.DEGRADED, "False", Reason.QUALITY_PASSED, "golden prompts pass again")
            return
        last = st.last_validation
        due = (
            last is None
            or last.revision != st.stable_revision
            or self.now_dt - parse_time(last.time) >= timedelta(seconds=interval)
        )
        if due:
            self.actions.append(RunValidation(st.stable_revision, None))

    # ------------------------------------------------------------------ rollout

    def _start(self, revision: str) -> None:
        st = self.status
        st.revisions.append(self._entry(revision, "canary", 0))
        st.canary_revision = revision
        # A command already on the object belongs to an earlier rollout: recorded, not acted upon.
        st.rollout = RolloutStatus(step=-1, started_at=self.now, last_command=self.command and self.command.value)
        if self.command is not None:
            self.command_consumed = True
            self.actions.append(ClearCommand())
        message = f"rolling out revision {revision} beside {st.stable_revision}"
        self._condition(ConditionType.PROGRESSING, "True", Reason.ROLLOUT_STARTED, message)
        self._condition(ConditionType.CANARY_VALIDATED, "Unknown", Reason.VALIDATING, "not validated yet")
        self._event("Normal", Reason.ROLLOUT_STARTED, message)
        self.message = message

    def _supersede(self, revision: str) -> None:
        old = self.status.canary_revision
        self._drain_canary()
        self._event("Normal", Reason.SUPERSEDED, f"canary {old} superseded by revision {revision}")
        self._start(revision)

    def _supersede_to_stable(self) -> None:
        old = self.status.canary_revision
        self._drain_canary()
        message = f"canary {old} withdrawn: the spec names the stable revision again"
        self._condition(ConditionType.PROGRESSING, "False", Reason.SUPERSEDED, message)
        self._event("Normal", Reason.SUPERSEDED, message)
        self.message = message

    def _progress(self) -> None:
        st = self.status
        rollout = st.rollout if st.rollout is not None else RolloutStatus(started_at=self.now)
        st.rollout = rollout
        held = rollout.paused and is_true(st.conditions, ConditionType.DEGRADED, Reason.CANARY_FAILED)
        command = self._new_command(rollout)
        if command is RolloutCommand.PROMOTE:
            self._promote("promoted by rollout-command")
            return
        if command is RolloutCommand.ABORT:
            self._roll_back("aborted by rollout-command")
            return
        if command is RolloutCommand.PAUSE and not held and not rollout.paused:
            rollout.paused = True
            self._event("Normal", Reason.PAUSED, "rollout paused by rollout-command")
        elif command is RolloutCommand.RESUME and held:
            rollout.paused, rollout.step, rollout.started_at, rollout.step_started_at = (
                False,
                -1,
                self.now,
                None,
            )
            held = False
            self._condition(ConditionType.DEGRADED, "False", Reason.RESUMED, "resumed: validating again")
            self._condition(ConditionType.CANARY_VALIDATED, "Unknown", Reason.VALIDATING, "not validated yet")
            self._event("Normal", Reason.RESUMED, "rollout resumed: validating the canary again")
        elif command is RolloutCommand.RESUME and rollout.paused:
            rollout.paused = False
            if rollout.step >= 0:
                rollout.step_started_at = self.now  # the step gets its whole observation window again
            self._event("Normal", Reason.RESUMED, "rollout resumed by rollout-command")
        if held:
            self.message = "canary failed; traffic on the stable: resume, promote or abort"
            return
        assert st.canary_revision is not None and rollout.started_at is not None
        if rollout.step < 0 and st.canary_revision not in self.observed.running:
            failure = self.observed.start_failures.get(st.canary_revision)
            if failure is not None and failure.final:
                self._fail(f"canary {st.canary_revision}: {failure.describe()}")
                return
            if failure is not None:
                message = f"canary {st.canary_revision}: {failure.describe()}"
                if not self._had(ConditionType.PROGRESSING, Reason.START_FAILING):
                    self._event("Warning", Reason.START_FAILING, message)
                self._condition(ConditionType.PROGRESSING, "True", Reason.START_FAILING, message)
                self.message = message
                return
            limit = self.settings.canary_start_timeout_s
            if self.now_dt - parse_time(rollout.started_at) >= timedelta(seconds=limit):
                self._fail(f"canary {st.canary_revision} did not start within {limit} s")
            else:
                self.message = f"waiting for canary {st.canary_revision} to run"
            return
        # During traffic steps a canary that stops running shows in its live error rate.
        if rollout.step < 0 and rollout.shadow_started_at is not None:
            self._shadow(rollout)
        elif rollout.step < 0:
            self._validate(rollout)
        elif rollout.step >= len(self.spec.rollout.steps):
            self._promote("all traffic steps passed")  # steps were shortened mid-rollout
        else:
            self._step(rollout)

    def _validate(self, rollout: RolloutStatus) -> None:
        st = self.status
        canary, stable = st.canary_revision, st.stable_revision
        assert canary is not None and stable is not None and rollout.started_at is not None
        result = st.last_validation
        if result is None or result.revision != canary or parse_time(result.time) < parse_time(rollout.started_at):
            run = self.observed.validation
            if run is None or run.revision != canary:
                self.actions.append(RunValidation(canary, stable))
                self.message = f"validating canary {canary} with golden prompts"
                return
            result = evaluate_validation(self.spec.rollout.validation, run, self.now)
            st.last_validation = result
            if result.passed:
                self._condition(ConditionType.CANARY_VALIDATED, "True", Reason.VALIDATION_PASSED, result.reason)
                self._event("Normal", Reason.VALIDATION_PASSED, f"canary {canary} passed validation")
            else:
                self._condition(ConditionType.CANARY_VALIDATED, "False", Reason.VALIDATION_FAILED, result.reason)
        if not result.passed:
            self._fail(f"validation failed: {result.reason}")
        elif rollout.paused:
            self.message = f"canary {canary} validated; rollout paused"
        elif self.spec.rollout.shadow is not None:
            self._enter_shadow(rollout)
        else:
            self._after_checks(rollout, "validation passed")

    def _after_checks(self, rollout: RolloutStatus, why: str) -> None:
        """The checks at 0 % passed: on to the first traffic step, or promote without steps."""
        if not self.spec.rollout.steps:
            self._promote(f"{why}; no traffic steps")
        else:
            self._enter_step(rollout, 0)

    def _enter_shadow(self, rollout: RolloutStatus) -> None:
        """Start copying live requests to the canary (the router's config names it from now on)."""
        shadow = self.spec.rollout.shadow
        assert shadow is not None
        rollout.shadow_started_at = self.now
        message = (
            f"shadowing canary {self.status.canary_revision}: {shadow.fraction:.0%} of live requests copied, "
            f"{shadow.min_pairs} pairs wanted"
        )
        self._condition(ConditionType.PROGRESSING, "True", Reason.SHADOW_STARTED, message)
        self._event("Normal", Reason.SHADOW_STARTED, message)
        self.message = message
        self.actions.append(ObserveShadow(self.status.canary_revision or "", self.now))

    def _shadow(self, rollout: RolloutStatus) -> None:
        """Judge the router's pairs: fail, wait, or go on (the router stops copying once the phase ends)."""
        st = self.status
        spec = self.spec.rollout.shadow
        canary, since = st.canary_revision, rollout.shadow_started_at
        assert canary is not None and since is not None
        if spec is None:  # shadow removed from the spec mid-phase
            rollout.shadow_started_at = None
            self._after_checks(rollout, "shadow phase removed from the spec")
            return
        elapsed = (self.now_dt - parse_time(since)).total_seconds()
        window = self.observed.shadow
        fresh = window is not None and (window.revision, window.epoch) == (canary, since)
        if not fresh and (rollout.paused or elapsed < spec.timeout_seconds):
            self.actions.append(ObserveShadow(canary, since))
            self.message = f"shadowing canary {canary}: waiting for the router's pairs"
            return
        verdict = judge_shadow(
            spec,
            window if fresh and window is not None else ShadowWindow(canary, since),
            since=since,
            now=self.now,
            elapsed_s=0.0 if rollout.paused else elapsed,
        )
        st.last_shadow = verdict.result
        if verdict.failure is not None:
            reason = Reason(verdict.failure)
            self._condition(ConditionType.CANARY_VALIDATED, "False", reason, verdict.result.reason)
            self._event("Warning", reason, f"canary {canary} failed its shadow phase: {verdict.result.reason}")
            self._fail(f"shadow phase: {verdict.result.reason}")
        elif verdict.advance and not rollout.paused:
            rollout.shadow_started_at = None
            if verdict.result.outcome == "Pass":
                self._event("Normal", Reason.SHADOW_PASSED, f"canary {canary} passed its shadow phase")
            self._after_checks(rollout, f"shadow phase: {verdict.result.reason}")
        else:
            self.actions.append(ObserveShadow(canary, since))
            paused = "; rollout paused" if rollout.paused else ""
            self.message = f"shadowing canary {canary}: {verdict.result.reason}{paused}"

    def _enter_step(self, rollout: RolloutStatus, index: int) -> None:
        weight = self.spec.rollout.steps[index].weight
        rollout.step, rollout.step_started_at = index, self.now
        self._set_canary_weight(weight)
        message = f"traffic step {index + 1}/{len(self.spec.rollout.steps)}: canary at {weight}%"
        self._condition(ConditionType.PROGRESSING, "True", Reason.STEP_STARTED, message)
        self._event("Normal", Reason.STEP_STARTED, message)
        self.message = message

    def _step(self, rollout: RolloutStatus) -> None:
        st = self.status
        canary, stable = st.canary_revision, st.stable_revision
        assert canary is not None and stable is not None and rollout.step_started_at is not None
        steps = self.spec.rollout.steps
        step = steps[rollout.step]
        live = self.observed.live
        verdict: LiveVerdict | None = None
        if live is not None and live.canary_revision == canary:
            verdict = compare_live(
                self.spec.rollout.validation, live, self.settings.live_limits, stable_serves=step.weight < 100
            )
            st.last_live = LiveComparison(
                revision=canary,
                step=rollout.step,
                weight=step.weight,
                time=self.now,
                outcome=verdict.outcome,
                reason=verdict.reason,
                checks=list(verdict.checks),
            )
            cost = self._cost(rollout, live, step.weight)
            breaches = [*verdict.breaches, *([cost.reason] if cost is not None and cost.outcome == "Fail" else [])]
            if breaches:
                self._fail(f"traffic step {rollout.step + 1} ({step.weight}%): " + "; ".join(breaches))
                return
        label = f"traffic step {rollout.step + 1}/{len(steps)} ({step.weight}%)"
        if rollout.paused:
            self.message = f"{label}: paused"
            return
        remaining = parse_time(rollout.step_started_at) + timedelta(seconds=step.pause_seconds) - self.now_dt
        if remaining <= timedelta(0) and verdict is not None and verdict.outcome == "Pass":
            if rollout.step + 1 < len(steps):
                self._enter_step(rollout, rollout.step + 1)
            else:
                self._promote("all traffic steps passed")
            return
        if remaining + timedelta(seconds=step.max_wait_seconds) <= timedelta(0):
            self._step_timed_out(rollout, step.max_wait_seconds, verdict)
            return
        self.actions.append(ObserveMetrics(canary, stable, rollout.step_started_at))
        if remaining > timedelta(0):
            self.message = f"{label}: holding {int(remaining.total_seconds())} s more"
        elif verdict is not None:
            self.message = f"{label}: waiting for a conclusive comparison ({verdict.reason})"
        else:
            self.message = f"{label}: waiting for the router's samples to judge"

    def _step_timed_out(self, rollout: RolloutStatus, max_wait_seconds: int, verdict: LiveVerdict | None) -> None:
        """No conclusive comparison maxWaitSeconds after the pause: fail rather than promote unseen."""
        step = self.spec.rollout.steps[rollout.step]
        seen = verdict.reason if verdict is not None else "no samples from the router"
        why = (
            f"traffic step {rollout.step + 1} ({step.weight}%): live comparison not conclusive "
            f"{max_wait_seconds} s after the pause (maxWaitSeconds): {seen}"
        )
        self._event("Warning", Reason.STEP_TIMEOUT, f"canary {self.status.canary_revision}: {why}")
        self._fail(why)

    def _cost(self, rollout: RolloutStatus, live: LiveSamples, weight: int) -> CostComparison | None:
        """This step's cost per output token of canary and stable (accrued in `status.lastCost`)."""
        st = self.status
        by_name = {r.name: r for r in st.revisions}
        canary, stable = by_name.get(st.canary_revision or ""), by_name.get(st.stable_revision or "")
        if canary is None or stable is None or rollout.step_started_at is None:
            return None
        step = StepCost(
            canary=canary,
            stable=stable,
            live=live,
            step=rollout.step,
            weight=weight,
            since=rollout.step_started_at,
            now=self.now,
        )
        st.last_cost = build_cost_comparison(
            st.last_cost,
            step,
            spec=self.spec.cost,
            max_cost_ratio=self.spec.rollout.validation.max_cost_ratio,
            prices=self.settings.prices,
            min_requests=self.settings.min_step_requests,
        )
        return st.last_cost

    def _fail(self, why: str) -> None:
        if self.spec.rollout.auto_rollback:
            self._roll_back(why)
        else:
            self._hold(why)

    def _hold(self, why: str) -> None:
        st = self.status
        assert st.rollout is not None
        self._set_canary_weight(0)
        st.rollout.paused, st.rollout.step, st.rollout.step_started_at = True, -1, None
        st.rollout.shadow_started_at = None
        self._condition(ConditionType.DEGRADED, "True", Reason.CANARY_FAILED, why)
        self._condition(ConditionType.PROGRESSING, "False", Reason.CANARY_FAILED, why)
        self._event("Warning", Reason.CANARY_FAILED, f"canary {st.canary_revision} held at 0%: {why}")
        self.message = f"canary {st.canary_revision} failed ({why}); traffic on the stable: resume, promote or abort"

    def _roll_back(self, why: str) -> None:
        canary = self.status.canary_revision
        self._drain_canary()
        message = f"rolled back revision {canary}: {why}"
        self._condition(ConditionType.DEGRADED, "True", Reason.ROLLED_BACK, message)
        self._condition(ConditionType.PROGRESSING, "False", Reason.ROLLED_BACK, message)
        self._event("Warning", Reason.ROLLED_BACK, message)
        self.message = message

    def _promote(self, why: str) -> None:
        st = self.status
        canary, old = st.canary_revision, st.stable_revision
        assert canary is not None
        for entry in st.revisions:
            entry.weight = 100 if entry.name == canary else 0
            if entry.name == canary:
                entry.role = "stable"
        st.stable_revision, st.canary_revision, st.rollout = canary, None, None
        message = f"revision {canary} promoted over {old}: {why}"
        self._condition(ConditionType.PROGRESSING, "False", Reason.PROMOTED, message)
        self._condition(ConditionType.DEGRADED, "False", Reason.PROMOTED, message)
        self._event("Normal", Reason.PROMOTED, message)
        self.message = message
