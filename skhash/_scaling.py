"""Per-channel standardisation of the learners' inputs, at any finite
magnitude: the statistics the towers' input scaling is built from."""

from __future__ import annotations

import numpy as np

__all__ = ["fit_scaler"]

#: A channel whose standard deviation is at most this fraction of its mean's
#: magnitude (or 0) is constant to float32 precision: it is centred, not
#: scaled (scaling would blow its rounding noise up to unit variance).
_CONSTANT_SPREAD = 1e-6


def _channel_statistics(a, ndim):
    """Mean and standard deviation of each channel (axis 1) of ``a``, over
    the items and the other axes, accumulated in float64 a small chunk at a
    time: the temporary memory stays a fraction of a megabyte whatever the
    size of the set (no float copy of it).

    The squared deviations are float32. The channels where they overflow
    (finite features beyond about ``1.8e19`` in magnitude) or all vanish
    (deviations below about ``1e-19``, or a constant channel) are computed
    again in float64: their scale is then finite and nonzero unless the
    channel is constant, where ``inf`` would have standardised every item to
    0 and given them all one code, and 0 would have read a channel of tiny
    features as constant. The other channels keep their float32 values."""
    n = a.shape[0]
    per_item = int(np.prod(a.shape[1:], dtype=np.int64))
    rows = max(1, (1 << 16) // max(per_item, 1))
    axes = (0,) + tuple(range(2, ndim))
    count = n * int(np.prod(a.shape[2:], dtype=np.int64))
    total = np.zeros(a.shape[1], np.float64)
    for start in range(0, n, rows):
        total += a[start : start + rows].sum(axis=axes, dtype=np.float64)
    mean = total / count
    shape = (1, -1) + (1,) * (ndim - 2)

    def squared_deviations(dtype):
        mean_d = mean.astype(dtype).reshape(shape)
        sq = np.zeros(a.shape[1], np.float64)
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            for start in range(0, n, rows):
                chunk = a[start : start + rows].astype(dtype)
                chunk -= mean_d
                np.square(chunk, out=chunk)
                sq += chunk.sum(axis=axes, dtype=np.float64)
        return sq

    sq = squared_deviations(np.float32)
    redo = ~np.isfinite(sq) | (sq == 0)
    if redo.any():
        sq[redo] = squared_deviations(np.float64)[redo]
    return mean, np.sqrt(sq / count)


def fit_scaler(arrays, standardize):
    """Per-modality ``(mean, scale)`` of ``arrays`` (a dict of arrays): per
    feature of 2-D inputs, per channel (axis 1) of N-D inputs, float32;
    ``(0, 1)`` when ``standardize`` is False."""
    scaler = {}
    for name, a in arrays.items():
        channels = a.shape[1]
        if standardize:
            mean, scale = _channel_statistics(a, a.ndim)
            # constant channels (a spread within float32 rounding of
            # their mean) are centred only; the test is relative, so
            # that features of any magnitude are standardised
            scale[scale <= _CONSTANT_SPREAD * np.abs(mean)] = 1.0
        else:
            mean, scale = np.zeros(channels), np.ones(channels)
        scaler[name] = (mean.astype(np.float32), scale.astype(np.float32))
    return scaler
