"""Exact sums of float64 values as integers in units of 2^-1200 (docs/CONTRACT.md §10.4).

Every finite float64 is an integer multiple of 2^-1074, so scaled by 2^1200 every value,
and every sum of values, is an integer: adding those integers is exact and does not
depend on the order or grouping of the values, and one division rounds the total. That
is what makes ``region_values`` identical to the last bit for any worker count.

The work is one pass of a compiled loop (numba) over the values: a value is its raw
bits, a biased exponent ``e`` and a 53-bit mantissa ``m`` (value = m * 2^(max(e, 1) -
1075)); ``m`` is cut into a 27-bit high and a 26-bit low half, each added with its sign
to an int64 bin of its exponent. A bin takes fewer than 2^27 per value, so it cannot
overflow before 2^36 values; :data:`MAX_VALUES` bounds one pass below that. Python
integers appear only when the bins are folded into a total, once per segment of values
over the bins it touched. Importing this module imports numba (``tileindex.values``
does so only when it runs); the loop is compiled on first use, or loaded from numba's
cache.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["MAX_VALUES", "SCALE", "Accumulator", "scaled_sum", "unscale"]

SCALE = 1200  # units of 2^-1200: every float64 is an integer number of them
MAX_VALUES = 1 << 35  # values one pass may take: every bin stays below 2^62
_BINS = 2047  # biased exponents 1..2046; 0 (subnormals) shares bin 1's scale, 2047 is inf/nan
_LOW_BITS = 26
_QUANTITIES = 3  # the value, the coverage fraction, value * coverage fraction


@numba.njit(cache=True, nogil=True)
def _segment(
    values: np.ndarray, valid: np.ndarray, fractions: np.ndarray, acc: np.ndarray
) -> tuple[int, float, float]:  # pragma: no cover (runs compiled)
    """Add the valid ``values`` to ``acc[0]`` and, when ``fractions`` is not empty, the
    fractions to ``acc[1]`` and the float64 products value * fraction to ``acc[2]``;
    return the count, min and max of the valid values."""
    terms = 3 if fractions.size > 0 else 1
    term = np.empty(3, dtype=np.float64)
    term_bits = term.view(np.int64)
    count = 0
    low = np.inf
    high = -np.inf
    for i in range(values.size):
        if not valid[i]:
            continue
        v = values[i]
        count += 1
        low = min(low, v)
        high = max(high, v)
        term[0] = v
        if terms == 3:
            term[1] = fractions[i]
            term[2] = v * fractions[i]
        for q in range(terms):
            bits = term_bits[q]
            e = (bits >> 52) & 0x7FF
            m = bits & 0xFFFFFFFFFFFFF
            if e == 0:
                e = 1  # subnormal: no implicit bit, at the smallest normal's scale
            else:
                m |= 0x10000000000000
            hi = m >> 26
            lo = m & 0x3FFFFFF
            if bits < 0:
                acc[q, e, 0] -= hi
                acc[q, e, 1] -= lo
            else:
                acc[q, e, 0] += hi
                acc[q, e, 1] += lo
    return count, low, high


def _fold(bins: npt.NDArray[np.int64]) -> int:
    """The exact total of one quantity's bins (shape ``(_BINS, 2)``), scaled by 2^1200."""
    total = 0
    for e in np.flatnonzero(bins.any(axis=1)).tolist():
        hi, lo = bins[e].tolist()
        # bin e holds mantissas of value * 2^(e - 1075); scaled by 2^1200 (e >= 1)
        total += ((hi << _LOW_BITS) + lo) << (e - 1075 + SCALE)
    return total


class Accumulator:
    """Count, min, max and exact sums of segments of values, one segment at a time.

    :meth:`add` takes one segment (a region's rows of one row group) and returns the
    count, min and max of its valid values and the scaled sums (integers, see the module)
    of the values, of the fractions and of the float64 products value * fraction (0 and
    0 without fractions). The int64 bins are reused between segments.
    """

    def __init__(self) -> None:
        self._acc = np.zeros((_QUANTITIES, _BINS, 2), dtype=np.int64)

    def add(
        self,
        values: npt.NDArray[np.float64],
        valid: npt.NDArray[np.bool_],
        fractions: npt.NDArray[np.float64] | None = None,
    ) -> tuple[int, float, float, tuple[int, int, int]]:
        if values.size > MAX_VALUES:
            raise ValueError(f"a segment of at most {MAX_VALUES} values, not {values.size}")
        v = np.ascontiguousarray(values, dtype=np.float64)
        ok = np.ascontiguousarray(valid, dtype=np.bool_)
        f = _EMPTY if fractions is None else np.ascontiguousarray(fractions, dtype=np.float64)
        if ok.shape != v.shape or (fractions is not None and f.shape != v.shape):
            raise ValueError("values, valid and fractions must have one shape")
        count, low, high = _segment(v, ok, f, self._acc)
        terms = 1 if fractions is None else _QUANTITIES
        sums = tuple(_fold(self._acc[q]) if q < terms else 0 for q in range(_QUANTITIES))
        self._acc[:terms] = 0
        return int(count), float(low), float(high), (sums[0], sums[1], sums[2])


_EMPTY = np.empty(0, dtype=np.float64)


def scaled_sum(values: npt.ArrayLike) -> int:
    """The exact sum of finite float64 ``values`` times 2^1200, as an integer.

    ``scaled_sum(v) / 2**1200`` is the exact sum correctly rounded (Python divides
    integers with one rounding), the same number as ``tileindex.report.exact_sum``; the
    result does not depend on the order of the values. The caller removes non-finite
    values (they are not checked here).
    """
    v = np.ascontiguousarray(values, dtype=np.float64).ravel()
    acc = Accumulator()
    ones = np.ones(min(v.size, MAX_VALUES), dtype=np.bool_)
    total = 0
    for start in range(0, v.size, MAX_VALUES):
        chunk = v[start : start + MAX_VALUES]
        total += acc.add(chunk, ones[: chunk.size])[3][0]
    return total


def unscale(total: int, divisor: int = 1) -> float:
    """``total / (divisor * 2^1200)``, correctly rounded."""
    return total / (divisor << SCALE)
