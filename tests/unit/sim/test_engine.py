"""The fluid replica model: batching, FIFO admission, timeouts, cold-start limits, histograms."""

from __future__ import annotations

import numpy as np
import pytest

from slm_operator.sim.engine import BINS, Engines, UnitParams, bin_of, percentile

PARAMS = UnitParams(itl_s=0.01, itl_per_seq_s=0.0, prefill_s=0.0, output_tokens=10, max_batch=4, engine_queue=0)
"""Service time 0.1 s, 4 at once: one replica answers 40 requests a second."""


def engines(ready: int = 1, timeout_s: float = 10.0, max_pending: int = 1000) -> Engines:
    e = Engines(1, 1.0, timeout_s, max_pending)
    e.configure(0, PARAMS, slo_ttft_s=1.0, slo_latency_s=2.0)
    e.ready[:] = ready
    return e


def test_under_capacity_every_request_is_answered_at_once() -> None:
    e = engines()
    e.step(0, np.array([30.0]))
    assert e.admitted[0] == 30 and e.queued[0] == 0 and e.slo_met[0] == 30
    assert e.running[0] == pytest.approx(3.0)  # 30/s x 0.1 s (Little's law)
    assert e.tokens[0] == 300


def test_over_capacity_the_rest_queues_and_is_served_oldest_first() -> None:
    e = engines()
    e.step(0, np.array([100.0]))
    assert e.admitted[0] == pytest.approx(40) and e.queued[0] == pytest.approx(60)
    e.step(1, np.array([10.0]))
    # 40 more from the queue (they waited 1 s), the new 10 wait behind the 20 still queued
    assert e.admitted[0] == pytest.approx(80) and e.queued[0] == pytest.approx(30)
    assert e.ttft_hist[0, bin_of(np.array([1.01]))[0]] == pytest.approx(40)


def test_more_replicas_answer_more() -> None:
    e = engines(ready=2)
    e.step(0, np.array([100.0]))
    assert e.admitted[0] == pytest.approx(80)


def test_batch_slows_decoding() -> None:
    e = Engines(1, 1.0, 10.0, 1000)
    e.configure(0, UnitParams(0.01, 0.01, 0.0, 10, 4, 0), 1.0, 2.0)
    e.ready[:] = 1
    e.running[:] = 4
    assert e.time_per_token()[0] == pytest.approx(0.04)


def test_requests_time_out_and_are_refused_beyond_the_pending_limit_at_zero() -> None:
    e = engines(ready=0, timeout_s=3.0, max_pending=50)
    e.step(0, np.array([80.0]))
    assert e.failed[0] == 30 and e.failed_cold[0] == 30 and e.queued[0] == 50
    for tick in range(1, 4):
        e.step(tick, np.array([0.0]))
    assert e.failed[0] == 80 and e.queued[0] == 0 and e.admitted[0] == 0


def test_percentile_of_histogram() -> None:
    hist = np.zeros(BINS)
    hist[bin_of(np.array([0.1, 1.0]))] = [90, 10]
    p50, p99 = percentile(hist, 50), percentile(hist, 99)
    assert p50 is not None and p99 is not None
    assert 0.1 <= p50 < 0.11 and 1.0 <= p99 < 1.1
    assert percentile(np.zeros(BINS), 50) is None
