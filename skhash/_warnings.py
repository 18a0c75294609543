"""Where skhash's warnings point: the caller's line, not skhash's."""

from __future__ import annotations

import os
import sys

import sklearn

_SKIPPED = tuple(
    os.path.dirname(os.path.abspath(m.__file__)) + os.sep
    for m in (sys.modules[__package__], sklearn)
)


def user_stacklevel():
    """``stacklevel`` for :func:`warnings.warn` that names the first frame
    outside skhash and scikit-learn, i.e. the user's call (``est.fit(...)``,
    ``pipe.fit(...)``, ``GridSearchCV.fit``'s caller), however deep inside
    the package the warning is raised (an overridden ``fit`` calling
    ``super().fit``, sklearn's ``_fit_context`` wrapper, ...).

    Returns
    -------
    stacklevel : int

    Examples
    --------
    >>> from skhash._warnings import user_stacklevel
    >>> user_stacklevel() >= 1
    True
    """
    frame = sys._getframe(1)  # the function that calls warnings.warn
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        _SKIPPED
    ):
        frame = frame.f_back
        level += 1
    return level
