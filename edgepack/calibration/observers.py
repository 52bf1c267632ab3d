"""Streaming range observers: minmax, percentile, mse and entropy (KL).

Each observer sees a tensor batch by batch (``update``) and keeps a bounded state (``state_nbytes``)
whatever the stream length: two floats for minmax, a fixed-size histogram for the others.
``range()`` returns the activation range to quantize to int8; it always contains 0.
"""
from __future__ import annotations

import math

import numpy as np

from edgepack.errors import ConfigError

METHODS = ("minmax", "percentile", "mse", "entropy")
DEFAULT_BINS = 2048
QUANT_STEPS = 255  # int8 asymmetric: 256 levels, 255 steps across the range


def _finite_values(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64).ravel()
    return a if np.isfinite(a).all() else a[np.isfinite(a)]


class Observer:
    """Interface: update(x) with any array, range() -> (min, max) containing 0, state_nbytes()."""

    def update(self, x) -> None:
        raise NotImplementedError

    def range(self) -> tuple[float, float]:
        raise NotImplementedError

    def state_nbytes(self) -> int:
        raise NotImplementedError


class MinMaxObserver(Observer):
    """The exact minimum and maximum seen."""

    def __init__(self):
        self._min, self._max = math.inf, -math.inf

    def update(self, x) -> None:
        a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        if a.dtype in (np.float32, np.float64) and a.size:  # min/max of the floats as they are: no float64 copy
            lo, hi = a.min(), a.max()
            if np.isfinite(lo) and np.isfinite(hi):  # (a NaN or inf anywhere: the filtering path below)
                self._min, self._max = min(self._min, float(lo)), max(self._max, float(hi))
                return
        a = _finite_values(a)
        if a.size:
            self._min = min(self._min, float(a.min()))
            self._max = max(self._max, float(a.max()))

    def range(self) -> tuple[float, float]:
        if self._min > self._max:
            return 0.0, 0.0
        return min(self._min, 0.0), max(self._max, 0.0)

    def state_nbytes(self) -> int:
        return 16


class HistogramObserver(Observer):
    """A fixed number of bins on a grid anchored at zero: 0 is always a bin edge, so widening the range
    by an integer factor merges whole bins exactly. Exact zeros (post-ReLU spikes) are counted apart."""

    def __init__(self, bins: int = DEFAULT_BINS):
        if int(bins) < 2 * QUANT_STEPS + 2:
            raise ConfigError(f"bins must be at least {2 * QUANT_STEPS + 2}, got {bins}", key="bins")
        self.bins = int(bins)
        self._hist = np.zeros(self.bins, np.int64)  # counts of non-zero values
        self._width = 0.0  # bin width; 0 until the first non-zero value
        self._neg = 0  # number of bins below zero
        self._zeros = 0
        self._min, self._max = math.inf, -math.inf

    def state_nbytes(self) -> int:
        return self._hist.nbytes + 6 * 8

    def update(self, x) -> None:
        a = _finite_values(x)
        if not a.size:
            return
        self._min = min(self._min, float(a.min()))
        self._max = max(self._max, float(a.max()))
        nz = a[a != 0]
        self._zeros += a.size - nz.size
        if not nz.size:
            return
        self._cover(min(float(nz.min()), 0.0), max(float(nz.max()), 0.0))
        idx = np.floor(nz / self._width).astype(np.int64) + self._neg
        np.clip(idx, 0, self.bins - 1, out=idx)
        self._hist += np.bincount(idx, minlength=self.bins)

    def _cover(self, lo: float, hi: float) -> None:
        """Make the grid cover [lo, hi] (lo <= 0 <= hi), widening it by the smallest integer factor."""
        n = self.bins
        if self._width == 0.0:
            neg, pos = -lo, hi
            a = int(round(n * neg / (neg + pos)))
            a = max(a, 1) if neg > 0 else a
            a = min(a, n - 1) if pos > 0 else a
            self._neg = a
            self._width = max(neg / a if a else 0.0, pos / (n - a) if a < n else 0.0)
            return
        w, a = self._width, self._neg
        if -lo <= a * w and hi <= (n - a) * w:
            return
        neg, pos = max(a * w, -lo), max((n - a) * w, hi)
        k = max(2, math.ceil((neg + pos) / (n * w)))
        while True:  # at most a couple of rounds: ceil adds at most one bin per side
            a2 = max(-(-a // k), math.ceil(-lo / (k * w)))
            p2 = max(-(-(n - a) // k), math.ceil(hi / (k * w)))
            if a2 + p2 <= n:
                break
            k += 1
        a2 += int(round((n - a2 - p2) * neg / (neg + pos)))  # spare bins shared by the sides' extents
        old = np.floor_divide(np.arange(n) - a, k) + a2  # old bin i lies inside new bin old[i]
        self._hist = np.bincount(old, weights=self._hist, minlength=n).round().astype(np.int64)
        self._width, self._neg = w * k, a2

    def view(self, method: str, **opts) -> "Observer":
        """The same statistics read by another method (``make_observer`` names and options): one
        streaming pass gives every histogram method's range, identical to running that method alone."""
        if method == "minmax":
            mm = MinMaxObserver()
            mm._min, mm._max = self._min, self._max
            return mm
        other = make_observer(method, bins=self.bins, **opts)
        if not isinstance(other, HistogramObserver):
            raise ConfigError(f"calibration method '{method}' has no histogram view", key="method")
        state = {k: v for k, v in vars(self).items() if k != "percentile"}
        vars(other).update(state)
        return other

    def clipped_energy(self, lo: float, hi: float) -> float:
        """Share of the tensor's energy (sum of x^2) that clipping to [lo, hi] removes, from the histogram
        (bin centres): 0 for a range holding everything, near 1 for a range that cuts the signal away."""
        counts = self._hist.astype(np.float64)
        if not counts.any():
            return 0.0
        centers = (np.arange(self.bins) - self._neg + 0.5) * self._width
        total = float(np.sum(counts * centers**2))
        lost = np.where(centers > hi, centers - hi, np.where(centers < lo, centers - lo, 0.0))
        return float(np.sum(counts * lost**2)) / total if total > 0 else 0.0

    # ---- helpers for the range searches ----
    def _edges(self) -> np.ndarray:
        return (np.arange(self.bins + 1) - self._neg) * self._width

    def _counts(self) -> np.ndarray:
        """Histogram with the exact zeros put back into the bin [0, w)."""
        c = self._hist.astype(np.float64)
        c[min(self._neg, self.bins - 1)] += self._zeros
        return c

    def range(self) -> tuple[float, float]:
        if self._min > self._max:
            return 0.0, 0.0
        dmin, dmax = min(self._min, 0.0), max(self._max, 0.0)
        if self._width == 0.0:  # only zeros seen
            return dmin, dmax
        lo, hi = self._search(dmin, dmax)
        return min(max(lo, dmin), 0.0), max(min(hi, dmax), 0.0)

    def _search(self, dmin: float, dmax: float) -> tuple[float, float]:
        raise NotImplementedError


class PercentileObserver(HistogramObserver):
    """Two-sided percentile: low (100 - p), high p, interpolated inside a histogram bin."""

    def __init__(self, percentile: float = 99.99, bins: int = DEFAULT_BINS):
        if not 50.0 < float(percentile) <= 100.0:
            raise ConfigError(f"percentile must be in (50, 100], got {percentile}", key="percentile")
        super().__init__(bins)
        self.percentile = float(percentile)

    def _search(self, dmin, dmax):
        counts, edges = self._counts(), self._edges()
        cdf = np.cumsum(counts)

        def value_at(frac: float) -> float:
            target = frac * cdf[-1]
            i = min(int(np.searchsorted(cdf, target, side="left")), self.bins - 1)
            before = cdf[i - 1] if i else 0.0
            inside = (target - before) / counts[i] if counts[i] else 0.0
            return float(edges[i] + min(max(inside, 0.0), 1.0) * self._width)

        return value_at(1.0 - self.percentile / 100.0), value_at(self.percentile / 100.0)


class MseObserver(HistogramObserver):
    """The clip range minimising the expected int8 quantize-dequantize MSE of the histogram:
    clipping error of the bins outside plus step^2/12 rounding noise for the non-zero values inside."""

    def _search(self, dmin, dmax):
        hist = self._hist.astype(np.float64)  # exact zeros are represented exactly: no error
        total = hist.sum() + self._zeros
        centers = (np.arange(self.bins) - self._neg + 0.5) * self._width
        pre = [np.concatenate([[0.0], np.cumsum(hist * centers**k)]) for k in range(3)]

        def mse(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
            j_hi = np.searchsorted(centers, hi, side="right")  # bins >= j_hi lie above hi
            j_lo = np.searchsorted(centers, lo, side="left")  # bins < j_lo lie below lo
            t0, t1, t2 = (p[-1] - p[j_hi] for p in pre)
            h0, h1, h2 = (p[j_lo] for p in pre)
            clip = (t2 - 2 * hi * t1 + hi**2 * t0) + (h2 - 2 * lo * h1 + lo**2 * h0)
            step = (hi - lo) / QUANT_STEPS
            return (clip + (hist.sum() - t0 - h0) * step**2 / 12.0) / total

        return _coordinate_search(mse, self._edges(), dmin, dmax)


class EntropyObserver(HistogramObserver):
    """TensorRT-style calibration: the clip range whose 255-step quantized histogram has the smallest
    KL divergence from the clipped reference. Signed tensors search both bounds (asymmetric);
    non-negative tensors (post-ReLU) search the upper bound only, and non-positive ones the lower."""

    def _search(self, dmin, dmax):
        # exact zeros are exact in int8 too: a post-ReLU zero spike must not sway the divergence
        counts, edges = self._hist.astype(np.float64), self._edges()
        zero = self._neg
        first = int(np.clip(np.floor(dmin / self._width) + zero, 0, zero))
        last = int(np.clip(np.ceil(dmax / self._width) + zero, zero, self.bins))  # edge index
        if last - first <= QUANT_STEPS:  # the data spans too few bins to judge: keep it all
            return dmin, dmax
        cache: dict[tuple[int, int], float] = {}

        def kl(lo_e: int, hi_e: int) -> float:
            if hi_e - lo_e < QUANT_STEPS:
                return math.inf
            if (lo_e, hi_e) not in cache:
                cache[lo_e, hi_e] = _kl_of_clip(counts, lo_e, hi_e)
            return cache[lo_e, hi_e]

        lo_e, hi_e = _edge_search(kl, first, zero, last)
        return float(edges[lo_e]), float(edges[hi_e])


def _coordinate_search(cost, edges: np.ndarray, dmin: float, dmax: float):
    """Minimise cost(lo, hi): a joint shrink of both bounds, then each bound alone over the bin edges."""
    ts = np.linspace(1.0 / len(edges), 1.0, len(edges))
    lo_c = np.append(edges[(edges < 0) & (edges > dmin)], dmin)
    hi_c = np.append(edges[(edges > 0) & (edges < dmax)], dmax)
    if dmin == 0.0:
        return 0.0, float(hi_c[np.argmin(cost(np.zeros_like(hi_c), hi_c))])
    if dmax == 0.0:
        return float(lo_c[np.argmin(cost(lo_c, np.zeros_like(lo_c)))]), 0.0
    t = ts[np.argmin(cost(ts * dmin, ts * dmax))]
    lo, hi = t * dmin, t * dmax
    for _ in range(2):
        hi = float(hi_c[np.argmin(cost(np.full_like(hi_c, lo), hi_c))])
        lo = float(lo_c[np.argmin(cost(lo_c, np.full_like(lo_c, hi)))])
    return lo, hi


KL_TOLERANCE = 0.02  # relative: the KL curve is flat and noisy near its minimum


def _tightest_near_min(cost, candidates: list[int]) -> int:
    """The tightest candidate (candidates run tightest first) whose cost is within KL_TOLERANCE of the
    minimum: every 8th is scanned, then every one before the pick. Picking the tightest of the
    near-minimal ranges, rather than the noisy argmin, keeps the result stable across batchings."""
    stride = 8 if len(candidates) > 64 else 1
    coarse = candidates[::stride] + [candidates[-1]]
    costs = [cost(c) for c in coarse]
    limit = min(costs) * (1.0 + KL_TOLERANCE)
    pick = next(i for i, v in enumerate(costs) if v <= limit)
    centre = candidates.index(coarse[pick])
    window = candidates[max(0, centre - stride + 1): centre + 1]
    return next(c for c in window if cost(c) <= limit)


def _edge_search(kl, first: int, zero: int, last: int) -> tuple[int, int]:
    """(lo, hi) edge indices minimising kl; the zero edge stays inside the range."""
    if first == zero:  # non-negative tensor: upper bound only
        his = list(range(min(zero + QUANT_STEPS, last), last + 1))
        return zero, _tightest_near_min(lambda h: kl(zero, h), his)
    if last == zero:  # non-positive tensor: lower bound only
        los = list(range(max(zero - QUANT_STEPS, first), first - 1, -1))
        return _tightest_near_min(lambda lo: kl(lo, zero), los), zero

    def joint(t: int) -> tuple[int, int]:  # shrink both bounds in proportion, t in 1..1000
        return zero - round((zero - first) * t / 1000), zero + round((last - zero) * t / 1000)

    t = _tightest_near_min(lambda t: kl(*joint(t)), list(range(1, 1001)))
    lo, hi = joint(t)
    for _ in range(2):  # then each bound alone
        hi = _tightest_near_min(lambda h, lo=lo: kl(lo, h), list(range(max(zero, lo + QUANT_STEPS), last + 1)))
        lo = _tightest_near_min(lambda x, hi=hi: kl(x, hi), list(range(min(zero, hi - QUANT_STEPS), first - 1, -1)))
    return lo, hi


def _kl_of_clip(counts: np.ndarray, lo_e: int, hi_e: int) -> float:
    """KL(P || Q): P the histogram clipped to bins [lo_e, hi_e) with the outliers piled on its end bins,
    Q the clipped histogram merged into QUANT_STEPS groups and spread back over P's non-empty bins."""
    sliced = counts[lo_e:hi_e]
    p = sliced.copy()
    p[0] += counts[:lo_e].sum()
    p[-1] += counts[hi_e:].sum()
    nonzero = p > 0
    starts = np.floor(np.arange(QUANT_STEPS) * (len(sliced) / QUANT_STEPS)).astype(np.int64)
    sizes = np.diff(np.append(starts, len(sliced)))
    groups = np.add.reduceat(sliced, starts)
    filled = np.add.reduceat(nonzero.astype(np.float64), starts)
    per_bin = np.divide(groups, filled, out=np.zeros_like(groups), where=filled > 0)
    q = np.repeat(per_bin, sizes) * nonzero
    p, q = _smooth(p), _smooth(q)
    if p is None or q is None:
        return math.inf
    p, q = p / p.sum(), q / q.sum()
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def _smooth(d: np.ndarray, eps: float = 1e-4) -> np.ndarray | None:
    """Give empty bins eps and take it back from the others, so KL stays finite."""
    zero = d == 0
    n_nonzero = d.size - int(zero.sum())
    if not n_nonzero:
        return None
    d = d + eps * zero - (eps * zero.sum() / n_nonzero) * ~zero
    return np.maximum(d, 1e-12)


_CLASSES = {"minmax": MinMaxObserver, "percentile": PercentileObserver, "mse": MseObserver,
            "entropy": EntropyObserver}
_OPTIONS = {"minmax": (), "percentile": ("percentile", "bins"), "mse": ("bins",), "entropy": ("bins",)}


def make_observer(method: str, **opts) -> Observer:
    """A fresh observer for one tensor; opts: bins (histogram methods), percentile (percentile)."""
    key = str(method).lower()
    if key not in _CLASSES:
        raise ConfigError(f"unknown calibration method '{method}'", key="method", allowed=METHODS)
    unknown = sorted(set(opts) - set(_OPTIONS[key]))
    if unknown:
        raise ConfigError(f"unknown option {', '.join(unknown)} for calibration method '{key}'",
                          key=unknown[0], allowed=_OPTIONS[key] or ["(none)"])
    return _CLASSES[key](**opts)
