"""Capacity measures and generalization bounds.

Chapter 1 uses the VC bound; chapter 2 the norm-based and PAC-Bayes bounds.
"""

from __future__ import annotations

import math


def vc_gap(d: int, m: int, delta: float) -> float:
    r"""Uniform-convergence gap of the VC bound (Mohri, Rostamizadeh, Talwalkar, *Foundations of
    Machine Learning*, 2nd ed., Cor. 3.19): with probability at least 1 - delta over m samples,
    every h in a class of VC dimension d satisfies

    .. math:: R(h) \le \hat R(h) + \sqrt{\frac{2 d \ln(e m / d)}{m}} + \sqrt{\frac{\ln(1/\delta)}{2m}}.

    Returns the two square-root terms summed. Requires integers ``1 <= d <= m`` and
    ``0 < delta < 1``. ``vc_gap(100, 1797, 0.05) = 0.686746``. A value above 1 means the bound
    is vacuous for the 0-1 loss; it is returned as computed, never clipped.
    """
    for name, v in (("d", d), ("m", m)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive integer")
    if d > m:
        raise ValueError(f"d={d} must be <= m={m} (the bound uses ln(e m / d) with m >= d)")
    if not (0.0 < float(delta) < 1.0):
        raise ValueError(f"delta={delta!r} must lie in the open interval (0, 1)")
    return math.sqrt(2.0 * d * math.log(math.e * m / d) / m) + math.sqrt(math.log(1.0 / delta) / (2.0 * m))
