"""All-or-nothing methods: a failure leaves the estimator as it was."""

from __future__ import annotations

import functools

__all__ = ["all_or_nothing"]


def all_or_nothing(method):
    """Decorate a method that sets fitted state (``fit``, ``fit_transform``)
    so that an exception, an interrupt included, restores the instance's
    attributes as they were before the call: unfitted, or the previous fit
    whole.

    The attributes are restored, not copied: the method must replace the
    fitted attributes it sets (assign new objects) rather than change the
    old ones in place, as scikit-learn's estimators do.

    Examples
    --------
    >>> from skhash.utils._atomic import all_or_nothing
    >>> class Est:
    ...     @all_or_nothing
    ...     def fit(self, fail):
    ...         self.coef_ = 1
    ...         if fail:
    ...             raise ValueError("bad input")
    ...         return self
    >>> est = Est()
    >>> try:
    ...     est.fit(fail=True)
    ... except ValueError:
    ...     pass
    >>> hasattr(est, "coef_")
    False
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        before = dict(self.__dict__)
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    return wrapper
