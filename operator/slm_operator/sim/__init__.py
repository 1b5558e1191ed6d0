"""A fleet simulator that runs the project's own decisions against modelled GPUs (`slm plan`, bench/fleet_sim.py).

It owns no policy: the queue-depth autoscaler is `slm_serving.autoscaling.queue_depth_policy`, the
rollout is `slm_operator.rollout.decide` with the budget of `slm_operator.builder.revisions`, and the
Serve config comes from `slm_operator.builder.serve_config.build_engine_deployment`; the simulator
only builds their inputs and carries out their outputs.

* `profiles` — calibrated engine and start-up parameters per model size and GPU type (docs/autoscaling.md).
* `workload` — arrivals: seeded Poisson with a daily cycle and bursts, or a replayed CSV trace.
* `engine` — vLLM replicas as a fluid model of continuous batching, ticked for many units at once.
* `serve_rules` — Ray Serve 2.60's controller rules (delays, scaling factors, cold start, bounds) and its
  default policy; `autoscalers` — the three autoscalers behind one interface (ours, Serve's, KEDA's).
* `upgrades` — rollouts: ours, KubeRay blue/green and KubeRay incremental upgrade.
* `fleet` — the event loop tying units, GPUs, autoscalers and upgrades together; `plan` — `slm plan`.

Needs numpy (the `sim` extra), not Ray; a small event loop of its own rather than simpy (see `fleet`).
"""
