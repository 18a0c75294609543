"""Checks of the float arrays that skhash computes with in float32."""

from __future__ import annotations

import numpy as np

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def beyond_float32(a):
    """The largest magnitude of the float array ``a`` when it exceeds
    float32's range (only wider floats can), else None. Reads ``a`` twice
    (its max and min), without an ``|a|`` copy."""
    if a.dtype.kind != "f" or a.dtype.itemsize <= 4 or not a.size:
        return None
    top = max(float(a.max()), -float(a.min()))
    return top if top > _FLOAT32_MAX else None


def check_real_float32(a, name, fix, rescale="rescale them into it."):
    """``a`` as a float32 array (no copy where it already is one), or a
    ValueError naming ``name``, what is wrong and ``fix`` (for NaN or
    infinite entries) or ``rescale`` (for values beyond float32's range).

    Refused: complex values (numpy's cast would drop the imaginary part with
    only a warning), values that are not numbers, NaN or infinite entries,
    and finite ones beyond float32's range (the cast would make them inf
    with only a warning). Booleans count as 0 and 1.
    """
    a = np.asarray(a)
    if np.iscomplexobj(a):
        raise ValueError(
            f"{name} must be real numbers, got an array of dtype {a.dtype}; "
            "pass its real part (or its magnitude) explicitly if that is meant."
        )
    if a.dtype == object:
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be real numbers: {exc}.") from None
    elif not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise ValueError(
            f"{name} must be real numbers, got an array of dtype {a.dtype}."
        )
    if a.dtype.kind == "f" and a.size:
        if not np.isfinite(a).all():  # the positions only on failure
            bad = ~np.isfinite(a)
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{name} contain {int(bad.sum())} NaN or infinite entries (the "
                f"first at index {first}: {a[first]}); {fix}"
            )
        top = beyond_float32(a)
        if top is not None:
            raise ValueError(
                f"{name} hold values up to {top:.3g}, beyond float32's range "
                f"({_FLOAT32_MAX:.3g}), in which they are used; {rescale}"
            )
        if a.dtype.itemsize > 4 and a.ndim:
            # a row (along the last axis) of values all below float32's
            # smallest number would silently become a row of zeros
            out = np.asarray(a, dtype=np.float32)
            lost = (a != 0).any(axis=-1) & ~(out != 0).any(axis=-1)
            if lost.any():
                first = tuple(int(i) for i in np.argwhere(lost)[0])
                raise ValueError(
                    f"{name} hold {int(lost.sum())} row(s) whose nonzero values "
                    f"all lie below float32's smallest number (the first at "
                    f"index {first}, largest magnitude "
                    f"{float(np.abs(a[first]).max()):.3g}); in float32, in which "
                    f"they are used, they would be rows of zeros; {rescale}"
                )
            return out
    return np.asarray(a, dtype=np.float32)
