"""Request arrivals per SLMDeployment: seeded Poisson with a daily cycle and bursts, or a CSV trace."""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

DAY_S = 86_400.0


@dataclass(frozen=True)
class Burst:
    start_s: float
    seconds: float
    factor: float
    """Arrival rate multiplier while the burst lasts."""


@dataclass(frozen=True)
class Traffic:
    """Synthetic load of one deployment: mean rate x daily cycle x bursts, Poisson arrivals."""

    mean_rps: float
    daily_swing: float = 0.6
    """Relative amplitude of the daily cycle (0: flat; 0.6: peak 1.6x, trough 0.4x the mean)."""
    peak_hour: float = 14.0
    bursts: tuple[Burst, ...] = ()
    prompt_tokens: float = 512
    output_tokens: float = 128

    def rate(self, t: float) -> float:
        """Mean arrivals per second at `t` seconds from midnight."""
        cycle = 1 + self.daily_swing * math.cos(2 * math.pi * (t / 3600 - self.peak_hour) / 24)
        factor = math.prod(b.factor for b in self.bursts if b.start_s <= t < b.start_s + b.seconds)
        return self.mean_rps * max(0.0, cycle) * factor


def random_bursts(rng: random.Random, per_day: float, hours: float) -> tuple[Burst, ...]:
    """Bursts at Poisson times: 5-30 min each, 2-4x the rate."""
    bursts: list[Burst] = []
    t = rng.expovariate(per_day / DAY_S)
    while t < hours * 3600:
        bursts.append(Burst(t, rng.uniform(300, 1800), rng.uniform(2.0, 4.0)))
        t += rng.expovariate(per_day / DAY_S)
    return tuple(bursts)


@dataclass(frozen=True)
class Trace:
    """Recorded arrivals: offsets in seconds and token counts per request."""

    offsets_s: tuple[float, ...]
    prompt_tokens: float
    output_tokens: float
    counts: dict[float, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_csv(cls, path: Path) -> Trace:
        """CSV with a header: `timestamp` (seconds; made relative to the first), and optional
        `prompt_tokens`, `output_tokens` (their means are used)."""
        with path.open(newline="") as stream:
            rows = list(csv.DictReader(stream))
        if not rows or "timestamp" not in rows[0]:
            raise ValueError(f"{path}: expected a CSV header with a 'timestamp' column")
        stamps = sorted(float(row["timestamp"]) for row in rows)
        first = stamps[0]

        def mean(column: str, default: float) -> float:
            values = [float(row[column]) for row in rows if row.get(column) not in (None, "")]
            return sum(values) / len(values) if values else default

        return cls(tuple(s - first for s in stamps), mean("prompt_tokens", 512), mean("output_tokens", 128))

    def binned(self, dt: float, ticks: int) -> np.ndarray:
        """Arrivals per tick, the trace repeated to fill `ticks` ticks."""
        if dt not in self.counts:
            span = max(self.offsets_s[-1] + dt, dt) if self.offsets_s else dt
            bins = np.zeros(max(1, math.ceil(span / dt)))
            np.add.at(bins, (np.asarray(self.offsets_s) // dt).astype(int), 1.0)
            self.counts[dt] = bins
        bins = self.counts[dt]
        return np.resize(bins, ticks)


Load = Traffic | Trace


class Arrivals:
    """Arrivals per tick for every deployment at once (deterministic for a seed)."""

    def __init__(self, loads: Sequence[Load], dt: float, ticks: int, seed: int, start_s: float = 0.0) -> None:
        self.loads = list(loads)
        self.dt = dt
        self.start_s = start_s
        self.rng = np.random.default_rng(seed)
        self.mean = np.array([load.mean_rps if isinstance(load, Traffic) else 0.0 for load in loads])
        self.swing = np.array([load.daily_swing if isinstance(load, Traffic) else 0.0 for load in loads])
        self.peak = np.array([load.peak_hour if isinstance(load, Traffic) else 0.0 for load in loads])
        width = max([len(load.bursts) for load in loads if isinstance(load, Traffic)] + [1])
        self.burst_start = np.full((len(loads), width), np.inf)
        self.burst_end = np.full((len(loads), width), -np.inf)
        self.burst_factor = np.ones((len(loads), width))
        for index, load in enumerate(loads):
            if isinstance(load, Traffic):
                for j, burst in enumerate(load.bursts):
                    self.burst_start[index, j] = burst.start_s
                    self.burst_end[index, j] = burst.start_s + burst.seconds
                    self.burst_factor[index, j] = burst.factor
        self.traced = [i for i, load in enumerate(loads) if isinstance(load, Trace)]
        self.trace_counts = {i: load.binned(dt, ticks) for i, load in enumerate(loads) if isinstance(load, Trace)}

    def rates(self, t: float) -> npt.NDArray[np.float64]:
        """Mean arrivals per second of every synthetic deployment at `t`."""
        cycle = np.maximum(0.0, 1 + self.swing * np.cos(2 * np.pi * (t / 3600 - self.peak) / 24))
        active = (self.burst_start <= t) & (t < self.burst_end)
        factor = np.where(active, self.burst_factor, 1.0).prod(axis=1)
        result: npt.NDArray[np.float64] = self.mean * cycle * factor
        return result

    def draw(self, tick: int) -> npt.NDArray[np.float64]:
        """Requests arriving during tick `tick` (from start + tick x dt to start + (tick + 1) x dt)."""
        counts = self.rng.poisson(self.rates(self.start_s + (tick + 0.5) * self.dt) * self.dt).astype(float)
        for index in self.traced:
            counts[index] = self.trace_counts[index][tick]
        return counts
