"""Canary rollout, decided purely: spec + status + observations + now → next status + actions.

`decide` is the one state machine; the kopf timer and `slm serve`'s local loop are thin shells that
gather an `Observation`, call it, persist the status and carry out the `actions`. Nothing here does
I/O, reads a clock or logs.

* `decide` — the transitions; `working` — one pass's inputs, working status and shared bookkeeping.
* `gate` — golden-prompt validation and live traffic-step comparison; `expectations` — one answer.
* `actions` — what a shell is asked to do; `commands` — the `slm.dev/rollout-command` annotation;
  `conditions` — metav1.Condition bookkeeping and RFC 3339 times.
* `adapters` — LoRA adapters as their own rollout units inside the stable revision (load, validate,
  step, promote or roll back, unload) and the `max_loras` / `max_lora_rank` capacity plan.

The replica budget split between stable and canary is `slm_operator.builder.revisions.split_replica_budget`.
"""
