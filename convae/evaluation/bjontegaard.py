"""Bjøntegaard delta metrics (VCEG-M33): average PSNR gain and bit-rate saving between two RD curves.

Each curve is fitted with a cubic polynomial in log10(rate) (a lower degree when it has fewer
than four points) and the fits are integrated over the rate or quality range both curves cover.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Curve = tuple[Sequence[float], Sequence[float]]  # (rates, psnrs)


def _fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if len(x) < 2:
        raise ValueError("a Bjøntegaard curve needs at least two points")
    return np.polyfit(x, y, min(3, len(x) - 1))


def _mean_over(poly: np.ndarray, lo: float, hi: float) -> float:
    integral = np.polyint(poly)
    return float((np.polyval(integral, hi) - np.polyval(integral, lo)) / (hi - lo))


def _arrays(curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    rate, psnr = (np.asarray(v, dtype=np.float64) for v in curve)
    order = np.argsort(rate)
    return np.log10(rate[order]), psnr[order]


def bd_psnr(anchor: Curve, test: Curve) -> float:
    """Mean PSNR difference (dB) of ``test`` over ``anchor`` across their common log-rate range."""
    (la, pa), (lt, pt) = _arrays(anchor), _arrays(test)
    lo, hi = max(la.min(), lt.min()), min(la.max(), lt.max())
    if lo >= hi:
        return float("nan")
    return _mean_over(_fit(lt, pt), lo, hi) - _mean_over(_fit(la, pa), lo, hi)


def bd_rate(anchor: Curve, test: Curve) -> float:
    """Mean bit-rate difference (%) of ``test`` over ``anchor`` at equal PSNR (negative = ``test`` saves bits)."""
    (la, pa), (lt, pt) = _arrays(anchor), _arrays(test)
    lo, hi = max(pa.min(), pt.min()), min(pa.max(), pt.max())
    if lo >= hi:
        return float("nan")
    diff = _mean_over(_fit(pt, lt), lo, hi) - _mean_over(_fit(pa, la), lo, hi)
    return float((10**diff - 1) * 100)


def bd_psnr_vs_best(anchors: Sequence[Curve], test: Curve, rate_range: tuple[float, float] | None = None,
                    samples: int = 1001) -> float:
    """Mean PSNR gain of ``test`` over the per-rate best of several ``anchors`` (fits sampled in log-rate).

    The range is where every curve has data, cut to ``rate_range`` (bits per pixel) when given.
    """
    fits = [_arrays(a) for a in anchors]
    lt, pt = _arrays(test)
    lo = max([lt.min(), *(la.min() for la, _ in fits)])
    hi = min([lt.max(), *(la.max() for la, _ in fits)])
    if rate_range is not None:
        lo, hi = max(lo, np.log10(rate_range[0])), min(hi, np.log10(rate_range[1]))
    if lo >= hi:
        return float("nan")
    grid = np.linspace(lo, hi, samples)
    best = np.max([np.polyval(_fit(la, pa), grid) for la, pa in fits], axis=0)
    return float(np.mean(np.polyval(_fit(lt, pt), grid) - best))
