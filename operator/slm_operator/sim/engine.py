"""vLLM replicas as a fluid model of continuous batching, ticked for every unit (revision) at once.

Per unit and tick: a unit answers requests at the rate its batches turn over (time per output token
grows with the running batch, `max_batch` requests per ready replica), queued requests first and
oldest first, and each answered group of requests records its time to first token
(queueing + prefill + one decode step) and latency (plus the remaining output tokens at the batch's
pace) in log-spaced histograms. Requests queued longer than the timeout fail, as do requests beyond
`max_pending` while a unit has no replica (the router's cold-start limits). Arrays keep memory bounded
whatever the number of requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

BINS = 180
LOG_MIN, LOG_MAX = -3.0, 3.0
"""Histogram range: 1 ms to 1000 s, 30 bins per decade."""
EDGES = np.logspace(LOG_MIN, LOG_MAX, BINS + 1)


def bin_of(seconds: Array) -> npt.NDArray[np.intp]:
    scaled = (np.log10(np.maximum(seconds, 10**LOG_MIN)) - LOG_MIN) / (LOG_MAX - LOG_MIN) * BINS
    index: npt.NDArray[np.intp] = np.clip(scaled.astype(np.intp), 0, BINS - 1)
    return index


def percentile(histogram: Array, q: float) -> float | None:
    """The q-th percentile (0..100) of a histogram, at the upper edge of its bin; None when empty."""
    total = float(histogram.sum())
    if total <= 0:
        return None
    index = int(np.searchsorted(np.cumsum(histogram), q / 100 * total - 1e-9))
    return float(EDGES[min(index, BINS - 1) + 1])


@dataclass
class UnitParams:
    """What sets one unit's speed (from its EngineProfile and spec)."""

    itl_s: float
    itl_per_seq_s: float
    prefill_s: float
    """Prefill time of one prompt."""
    output_tokens: float
    max_batch: int
    engine_queue: int
    """Requests a replica takes beyond its batch (Serve's max_ongoing_requests minus the batch)."""
    shared_compute: bool = False
    startup_slowdown: float = 0.0


class Engines:
    """State and counters of `units` units; `ready` is set by the fleet (replicas RUNNING)."""

    def __init__(self, units: int, dt: float, timeout_s: float, max_pending: int) -> None:
        self.dt = dt
        self.slots = max(2, round(timeout_s / dt))
        self.max_pending = max_pending
        self.ready = np.zeros(units)
        self.running = np.zeros(units)
        self.queue = np.zeros((units, self.slots))
        self.queued = np.zeros(units)
        self.itl = np.ones(units) * 0.01
        self.itl_per_seq = np.zeros(units)
        self.prefill = np.zeros(units)
        self.output_tokens = np.ones(units)
        self.max_batch = np.ones(units)
        self.engine_queue = np.zeros(units)
        self.shared = np.zeros(units, dtype=bool)
        self.startup_slowdown = np.zeros(units)
        self.starting = np.zeros(units)
        """Replicas starting (set by the fleet): they slow a shared machine down."""
        self.slo_ttft = np.full(units, np.inf)
        self.slo_latency = np.full(units, np.inf)
        self.ttft_hist = np.zeros((units, BINS))
        self.latency_hist = np.zeros((units, BINS))
        self.arrived = np.zeros(units)
        self.admitted = np.zeros(units)
        self.failed = np.zeros(units)
        self.failed_cold = np.zeros(units)
        """Requests that timed out or were refused while their unit had no replica (at zero)."""
        self.slo_met = np.zeros(units)
        self.tokens = np.zeros(units)
        self._ages: Array = (self.slots - 1 - np.arange(self.slots)).astype(np.float64) * dt

    def configure(self, unit: int, params: UnitParams, slo_ttft_s: float, slo_latency_s: float) -> None:
        self.itl[unit], self.itl_per_seq[unit], self.prefill[unit] = (
            params.itl_s,
            params.itl_per_seq_s,
            params.prefill_s,
        )
        self.output_tokens[unit], self.max_batch[unit] = params.output_tokens, params.max_batch
        self.engine_queue[unit], self.shared[unit] = params.engine_queue, params.shared_compute
        self.startup_slowdown[unit] = params.startup_slowdown
        self.slo_ttft[unit], self.slo_latency[unit] = slo_ttft_s, slo_latency_s

    def time_per_token(self) -> Array:
        batch = np.where(self.shared, self.running, self.running / np.maximum(self.ready, 1))
        slowdown = 1 + self.startup_slowdown * self.starting
        result: Array = (self.itl + self.itl_per_seq * np.maximum(batch - 1, 0)) * slowdown
        return result

    def engine_waiting(self) -> Array:
        """Queued requests inside the engines (the rest wait at Serve's handles/router)."""
        result: Array = np.minimum(self.queued, self.ready * self.engine_queue)
        return result

    def step(self, tick: int, arrivals: Array) -> None:
        """Advance one tick with `arrivals` requests per unit arriving during it.

        A unit with n ready replicas of batch C, at service time S (prefill + output tokens at the
        batch's time per token, from last tick's batch), answers up to C·n/S requests a second: that
        many are taken from its queue (oldest first) and then from the new arrivals; its running
        count follows by Little's law (served per second x S).
        """
        dt, slot = self.dt, tick % self.slots
        self.arrived += arrivals
        live = self.ready > 0
        expired = self.queue[:, slot].copy()
        self.failed += expired
        self.failed_cold += np.where(live, 0.0, expired)
        self.queued -= expired
        self.queue[:, slot] = 0.0
        service = self.prefill + self.output_tokens * self.time_per_token()
        budget = np.where(live, self.max_batch * self.ready / service * dt, 0.0)
        served = np.zeros_like(budget)
        rows = np.flatnonzero((self.queued > 0) & (budget > 0))
        if rows.size:
            self._admit_queued(rows, budget, served, slot)
        direct = np.minimum(arrivals, budget)
        rest = arrivals - direct
        rejected = np.where(live, 0.0, np.maximum(0.0, self.queued + rest - self.max_pending))
        rest -= rejected
        self.failed += rejected
        self.failed_cold += rejected
        self.queue[:, slot] = rest
        self.queued += rest
        served += direct
        self.running = np.minimum(served / dt * service, self.max_batch * self.ready)
        self.tokens += served * self.output_tokens
        self._record(np.arange(direct.size), direct, np.zeros(direct.size))

    def _admit_queued(self, rows: npt.NDArray[np.intp], free: Array, served: Array, slot: int) -> None:
        order = (slot + 1 + np.arange(self.slots)) % self.slots
        waiting = self.queue[rows][:, order]
        before = np.cumsum(waiting, axis=1) - waiting
        take = np.clip(free[rows, None] - before, 0.0, waiting)
        self.queue[rows[:, None], order[None, :]] = waiting - take
        taken = take.sum(axis=1)
        self.queued[rows] -= taken
        served[rows] += taken
        free[rows] -= taken
        hit_rows, hit_cols = np.nonzero(take)
        self._record(rows[hit_rows], take[hit_rows, hit_cols], self._ages[hit_cols])

    def _record(self, units: npt.NDArray[np.intp], counts: Array, waits: Array) -> None:
        keep = counts > 0
        if not keep.any():
            return
        units, counts, waits = units[keep], counts[keep], waits[keep]
        tpot = self.time_per_token()[units]
        ttft = waits + self.prefill[units] + tpot
        latency = ttft + (self.output_tokens[units] - 1) * tpot
        np.add.at(self.ttft_hist, (units, bin_of(ttft)), counts)
        np.add.at(self.latency_hist, (units, bin_of(latency)), counts)
        met = (ttft <= self.slo_ttft[units]) & (latency <= self.slo_latency[units])
        np.add.at(self.slo_met, units, counts * met)
        np.add.at(self.admitted, units, counts)
