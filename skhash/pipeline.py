"""The cross-modal Pipeline: ``fit(X_img, X_txt, y)`` as well as ``fit(X, y)``."""

# Authors: The skhash developers
# SPDX-License-Identifier: BSD-3-Clause

from __future__ import annotations

from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn import get_config
from sklearn import pipeline as _skpipeline
from sklearn.utils.metadata_routing import process_routing
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from skhash._codes import CodeSet
from skhash._modalities import MultiModal

__all__ = ["Pipeline", "make_pipeline"]


class _Missing:
    """Marks an argument that was not passed (``y=None`` is a real value)."""

    def __repr__(self):
        return "<not given>"


_MISSING = _Missing()


def _is_container(obj):
    # scipy's dok_matrix is a dict: it is a plain array here
    return isinstance(obj, (MultiModal, CodeSet, dict)) and not sp.issparse(obj)


def _ndim(obj):
    if sp.issparse(obj):
        return 2
    ndim = getattr(obj, "ndim", None)
    if ndim is None:
        ndim = np.ndim(obj)
    return ndim


class Pipeline(_skpipeline.Pipeline):
    """A scikit-learn Pipeline that also takes the modalities one by one.

    The same object as :class:`sklearn.pipeline.Pipeline` (caching with
    ``memory``, ``set_params(step__param=...)``, slicing, ``GridSearchCV``),
    whose ``fit``, ``fit_transform``, ``transform``, ``score`` and
    ``kneighbors`` accept the arrays of each modality as separate positional
    arguments, the way a user holds them::

        Pipeline([("hq", HQHasher()), ("search", TwoStageRetriever())])
            .fit(X_img, X_txt, y).score(Q_img, Q_txt, y_q)

    as well as the scikit-learn form ``fit(X, y)``, where ``X`` is a
    :class:`~skhash.MultiModal` (what cross-validation passes) or a plain
    2-D array (single-modal retrieval, the modality named ``"X"``). The
    positional arrays are packed into ``MultiModal(img=..., txt=...)`` under
    the names of ``modalities``, in that order.

    Read more in the :ref:`User Guide <pipeline>`.

    Parameters
    ----------
    steps : list of tuple
        ``(name, estimator)`` pairs, as for scikit-learn's Pipeline: code
        learners and transformers, then usually a
        :class:`~skhash.retrieval.TwoStageRetriever`.
    modalities : tuple of str or None, default=("img", "txt")
        Names given to positional modality arrays, in order (at least two).
        None turns the positional form off: every call is read as
        scikit-learn's ``(X, y)``, exactly as in
        :class:`sklearn.pipeline.Pipeline` (use it for single-modality data
        with a multi-label ``y``).
    transform_input : list of str, default=None
        As in :class:`sklearn.pipeline.Pipeline` (needs metadata routing).
    memory : str or object with the joblib.Memory interface, default=None
        Caches the fitted transformers (every step but the last), keyed on
        their parameters and input data: in a ``GridSearchCV`` that only
        varies the final retriever's parameters (``search__alpha``), each
        learner is trained once per fold.
    verbose : bool, default=False
        Print the time of each step.

    Attributes
    ----------
    named_steps : :class:`~sklearn.utils.Bunch`
        The steps by name.
    n_features_in_ : int
        As the first step's (single-modality fits only).

    See Also
    --------
    make_pipeline : Build a Pipeline from estimators, naming them.
    skhash.compose.ModalityTransformer : Per-modality preprocessing step.
    sklearn.pipeline.Pipeline : The base class.

    Notes
    -----
    **How a call is read.** Let ``n = len(modalities)`` and ``k`` the number
    of positional arguments. Keyword ``y=`` always means labels; keyword
    ``X=`` is the scikit-learn input (then no positional data).

    1. If the first positional argument is a ``MultiModal`` (or a dict, or a
       ``CodeSet``), or ``modalities`` is None, the call is scikit-learn's
       ``(X,)`` or ``(X, y)``.
    2. Otherwise the positional arguments are arrays. With ``y=`` given by
       keyword, all of them are modalities: ``k == 1`` (a plain array, the
       single modality ``"X"``) or ``k == n``.
    3. Without ``y=``:

       - ``k == n + 1``: ``n`` modalities, then the labels;
       - ``k == 1``: one plain array, no labels;
       - ``k == 2``: one plain array and its labels ``(X, y)`` -- except
         when ``n == 2`` and the second array is 2-D: two modalities
         without labels and one modality with a multi-label indicator
         ``y`` look the same, so the call raises a ``TypeError`` asking
         for ``fit(X_img, X_txt, y=None)`` or ``fit(X, y=Y)``. A 1-D second
         array is always labels (a modality is 2-D);
       - ``k == n`` (``n >= 3``): ``n`` modalities without labels.

       Any other count raises a ``TypeError`` listing the accepted forms.

    ``transform`` and ``kneighbors`` take no labels: one argument (a
    ``MultiModal`` or a plain array) or ``n`` modality arrays. In
    ``kneighbors`` a trailing integer positional argument is
    ``n_neighbors`` (as in ``kneighbors(X, 10)``); ``X=None`` queries the
    indexed items themselves.

    With metadata routing disabled (scikit-learn's default), the keyword
    arguments of ``score`` (``n_neighbors``, ``direction``, ``variant``,
    ``metric``) go to the final step's ``score``.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.datasets import make_cross_modal
    >>> from skhash.hashing import HQHasher
    >>> from skhash.pipeline import Pipeline
    >>> from skhash.retrieval import TwoStageRetriever
    >>> X, y = make_cross_modal(120, n_classes=3, random_state=42)
    >>> X_img, X_txt = X["img"], X["txt"]
    >>> pipe = Pipeline([
    ...     ("hq", HQHasher(n_bits=16, n_codebooks=2, n_codewords=8,
    ...                     hidden_layer_sizes=(32,), max_epochs=2,
    ...                     random_state=0)),
    ...     ("search", TwoStageRetriever(alpha=20, n_neighbors=10)),
    ... ])
    >>> pipe.fit(X_img[:80], X_txt[:80], y[:80])
    Pipeline(steps=[('hq', HQHasher(...)), ('search', TwoStageRetriever(...))])
    >>> 0.0 <= pipe.score(X_img[80:], X_txt[80:], y[80:]) <= 1.0
    True
    >>> pipe.score(X[80:], y[80:]) == pipe.score(X_img[80:], X_txt[80:], y[80:])
    True
    >>> idx = pipe.kneighbors(X_img[80:], X_txt[80:], 5, direction="img->txt",
    ...                       return_distance=False)
    >>> idx.shape
    (40, 5)
    """

    _parameter_constraints: dict = {
        **_skpipeline.Pipeline._parameter_constraints,
        "modalities": [tuple, list, None],
    }

    def __init__(
        self,
        steps,
        *,
        modalities=("img", "txt"),
        transform_input=None,
        memory=None,
        verbose=False,
    ):
        super().__init__(
            steps, transform_input=transform_input, memory=memory, verbose=verbose
        )
        self.modalities = modalities

    # ------------------------------------------------------------------ #
    # reading a call
    # ------------------------------------------------------------------ #
    def _modality_names(self):
        names = self.modalities
        if names is None:
            return None
        if isinstance(names, str) or not isinstance(names, (tuple, list)):
            raise ValueError(
                "The 'modalities' parameter of Pipeline must be a tuple of at "
                f"least two names such as ('img', 'txt'), or None; got {names!r}."
            )
        names = tuple(names)
        if (
            len(names) < 2
            or len(set(names)) != len(names)
            or not all(isinstance(n, str) and n.isidentifier() for n in names)
        ):
            raise ValueError(
                "The 'modalities' parameter of Pipeline must hold at least two "
                f"distinct identifiers such as ('img', 'txt'); got {names!r}. "
                "Use modalities=None for single-modality data."
            )
        return names

    def _pack(self, names, arrays):
        for name, a in zip(names, arrays):
            if _is_container(a):
                raise TypeError(
                    f"A {type(a).__name__} was passed as the modality {name!r}; "
                    "pass either one MultiModal X, or one plain array per "
                    f"modality in the order {names}."
                )
        return MultiModal(**dict(zip(names, arrays)))

    def _read_call(self, method, arrays, X, y, *, takes_y=True):
        """Return ``(X, y)`` from the arguments of a call; see the Notes."""
        if X is not _MISSING:
            if arrays:
                raise TypeError(
                    f"{method}() got the data both positionally and as X=; pass "
                    "it once."
                )
            arrays = (X,)
        if not arrays:
            raise TypeError(
                f"{method}() needs data: {method}(X_img, X_txt"
                + (", y)" if takes_y else ")")
                + f" or {method}(X"
                + (", y)" if takes_y else ")")
                + " with a MultiModal X."
            )
        names = self._modality_names()
        k = len(arrays)
        first = arrays[0]
        y_given = y is not _MISSING

        if not takes_y:
            if k == 1:
                return first, None
            if names is not None and k == len(names):
                return self._pack(names, arrays), None
            expected = "one X" if names is None else f"one X or {len(names)} arrays"
            raise TypeError(
                f"{method}() takes {expected} (modalities {names}); got {k} "
                "positional arguments."
            )

        if names is None or _is_container(first):
            if k > 2:
                raise TypeError(
                    f"{method}() got a {type(first).__name__} and {k - 1} more "
                    "positional arguments; with a MultiModal (or when the "
                    "Pipeline has modalities=None) the call is "
                    f"{method}(X) or {method}(X, y)."
                )
            if k == 2:
                if y_given:
                    raise TypeError(f"{method}() got y both positionally and as y=.")
                y = arrays[1]
            return first, (None if y is _MISSING else y)

        n = len(names)
        if y_given:
            if k == 1:
                return first, y
            if k == n:
                return self._pack(names, arrays), y
            raise TypeError(
                f"{method}() got {k} arrays before y=; expected one array (a "
                f"single modality) or {n}, one per modality {names}."
            )
        if k == n + 1:
            return self._pack(names, arrays[:n]), arrays[n]
        if k == 1:
            return first, None
        if k == 2:
            if n == 2 and _ndim(arrays[1]) != 1:
                raise TypeError(
                    f"{method}() got two 2-D arrays and no y=: this could be the "
                    f"modalities {names} without labels, or one modality with "
                    "a multi-label indicator y. Write "
                    f"{method}(X_{names[0]}, X_{names[1]}, y=None) for two "
                    f"modalities without labels, or {method}(X, y=Y) for one "
                    "modality with labels Y (or build the Pipeline with "
                    "modalities=None for single-modality data)."
                )
            return first, arrays[1]
        if k == n:
            return self._pack(names, arrays), None
        raise TypeError(
            f"{method}() got {k} positional arguments; accepted: {method}(X), "
            f"{method}(X, y) with a MultiModal or plain array X, or the {n} "
            f"modalities {names} optionally followed by y."
        )

    def _transform_head(self, X):
        """Transform ``X`` through every step but the last."""
        Xt = X
        for _, _, step in self._iter(with_final=False):
            Xt = step.transform(Xt)
        return Xt

    # ------------------------------------------------------------------ #
    # estimator interface
    # ------------------------------------------------------------------ #
    def fit(self, *arrays, X=_MISSING, y=_MISSING, **params):
        """Fit every step in turn; the last one on the transformed data.

        Parameters
        ----------
        *arrays : array-like or MultiModal
            ``X_img, X_txt[, y]`` (the modalities in the order of
            ``modalities``, optionally followed by the labels), or ``X[, y]``
            with ``X`` a :class:`~skhash.MultiModal` or a plain 2-D array.
            See the class Notes for how a call is read.
        X : MultiModal or array-like, optional
            The data by keyword, as in scikit-learn (then no positional data).
        y : array-like of shape (n_samples,) or (n_samples, n_classes), optional
            Labels (class ids or a multi-label indicator matrix). ``y=None``
            says explicitly that there are none.
        **params : dict
            ``step__param`` fit parameters, as in scikit-learn's Pipeline.

        Returns
        -------
        self : object
            The fitted pipeline.
        """
        X, y = self._read_call("fit", arrays, X, y)
        return super().fit(X, y, **params)

    @available_if(_skpipeline.Pipeline._can_fit_transform)
    def fit_transform(self, *arrays, X=_MISSING, y=_MISSING, **params):
        """Fit the pipeline and transform the data with every step.

        Parameters
        ----------
        *arrays : array-like or MultiModal
            As for :meth:`fit`.
        X : MultiModal or array-like, optional
            The data by keyword.
        y : array-like, optional
            Labels.
        **params : dict
            ``step__param`` fit parameters.

        Returns
        -------
        Xt : object
            The output of the last step (a :class:`~skhash.CodeSet` for a
            code learner).
        """
        X, y = self._read_call("fit_transform", arrays, X, y)
        return super().fit_transform(X, y, **params)

    @available_if(_skpipeline.Pipeline._can_transform)
    def transform(self, *arrays, X=_MISSING, **params):
        """Transform the data with every step.

        Parameters
        ----------
        *arrays : array-like or MultiModal
            One ``X`` (a ``MultiModal`` or a plain array), or one array per
            modality in the order of ``modalities``.
        X : MultiModal or array-like, optional
            The data by keyword.
        **params : dict
            Metadata for the steps (metadata routing only).

        Returns
        -------
        Xt : object
            The output of the last step.
        """
        X, _ = self._read_call("transform", arrays, X, _MISSING, takes_y=False)
        return super().transform(X, **params)

    @available_if(_skpipeline._final_estimator_has("score"))
    def score(self, *arrays, X=_MISSING, y=_MISSING, sample_weight=None, **params):
        """Transform the queries and score them with the final step.

        With a :class:`~skhash.retrieval.TwoStageRetriever` last, this is the
        MAP@K of the queries against the indexed database (the training
        data), the harmonic mean of both directions for two modalities.

        Parameters
        ----------
        *arrays : array-like or MultiModal
            ``Q_img, Q_txt, y_q`` or ``(X, y)``, as for :meth:`fit`.
        X : MultiModal or array-like, optional
            The queries by keyword.
        y : array-like, optional
            Labels of the queries.
        sample_weight : array-like, default=None
            Passed to the final step's ``score`` when given.
        **params : dict
            Passed to the final step's ``score`` (e.g. ``n_neighbors``,
            ``direction``, ``variant``, ``metric``); with metadata routing
            enabled, routed as in scikit-learn.

        Returns
        -------
        score : float
            The final step's score.
        """
        X, y = self._read_call("score", arrays, X, y)
        if get_config().get("enable_metadata_routing", False):
            # routed as scikit-learn's Pipeline.score, except that an absent
            # sample_weight is not routed: a retriever's score takes none,
            # and routing sample_weight=None refused every call (and so
            # GridSearchCV without scoring=)
            check_is_fitted(self)
            if sample_weight is not None:
                params["sample_weight"] = sample_weight
            routed = process_routing(self, "score", **params)
            Xt = X
            for _, name, step in self._iter(with_final=False):
                Xt = step.transform(Xt, **routed[name].transform)
            final_name, final = self.steps[-1]
            return final.score(Xt, y, **routed[final_name].score)
        check_is_fitted(self)
        Xt = self._transform_head(X)
        if sample_weight is not None:
            params["sample_weight"] = sample_weight
        return self.steps[-1][1].score(Xt, y, **params)

    @available_if(_skpipeline._final_estimator_has("kneighbors"))
    def kneighbors(
        self,
        *arrays,
        X=_MISSING,
        n_neighbors=None,
        direction=None,
        return_distance=True,
    ):
        """Transform the queries, then search them with the final step.

        Parameters
        ----------
        *arrays : array-like, MultiModal, None or int
            The queries: one ``X`` (``MultiModal`` or plain array), one array
            per modality, or None (query the indexed items themselves, each
            excluding itself). A trailing int is ``n_neighbors``. One plain
            array with ``direction="a->b"``, ``a`` one of ``modalities``, is
            the queries of modality ``a``.
        X : MultiModal, array-like or None, optional
            The queries by keyword.
        n_neighbors : int, default=None
            Number of neighbours; None uses the final step's default.
        direction : str, default=None
            Such as ``"img->txt"``; passed to the final step.
        return_distance : bool, default=True
            Whether to return the distances.

        Returns
        -------
        distances : ndarray of shape (n_queries, n_neighbors)
            Only with ``return_distance=True``.
        indices : ndarray of shape (n_queries, n_neighbors)
            Database rows, nearest first.
        """
        check_is_fitted(self)
        if (
            arrays
            and isinstance(arrays[-1], Integral)
            and not isinstance(arrays[-1], bool)
        ):
            if n_neighbors is not None:
                raise TypeError(
                    "kneighbors() got n_neighbors both positionally and by keyword."
                )
            n_neighbors, arrays = arrays[-1], arrays[:-1]
        if X is _MISSING and (not arrays or (len(arrays) == 1 and arrays[0] is None)):
            Xt = None
        elif X is None and not arrays:
            Xt = None
        else:
            Xq, _ = self._read_call("kneighbors", arrays, X, _MISSING, takes_y=False)
            Xt = self._transform_head(self._query_modality(Xq, direction))
        return self.steps[-1][1].kneighbors(
            Xt, n_neighbors, direction=direction, return_distance=return_distance
        )

    def _query_modality(self, X, direction):
        """One plain array of queries and ``direction="a->b"``: the queries
        are of the modality ``a`` (``pipe.kneighbors(Q_img, 10,
        direction="img->txt")``)."""
        names = self._modality_names()
        if (
            names is None
            or X is None
            or _is_container(X)
            or not isinstance(direction, str)
            or "->" not in direction
        ):
            return X
        source = direction.split("->", 1)[0].strip()
        return self._pack((source,), (X,)) if source in names else X

    def __getitem__(self, ind):
        out = super().__getitem__(ind)
        if isinstance(ind, slice) and isinstance(out, Pipeline):
            out.set_params(
                modalities=self.modalities, transform_input=self.transform_input
            )
        return out


def make_pipeline(
    *steps, modalities=("img", "txt"), memory=None, transform_input=None, verbose=False
):
    """Build a :class:`Pipeline` from estimators, naming each after its class.

    Parameters
    ----------
    *steps : list of estimators
        The steps, in order.
    modalities : tuple of str or None, default=("img", "txt")
        Names of positional modality arrays, see :class:`Pipeline`.
    memory : str or object with the joblib.Memory interface, default=None
        Caches the fitted transformers.
    transform_input : list of str, default=None
        As in :class:`sklearn.pipeline.Pipeline`.
    verbose : bool, default=False
        Print the time of each step.

    Returns
    -------
    pipeline : Pipeline
        The pipeline, steps named like ``"hqhasher"``, ``"twostageretriever"``.

    Examples
    --------
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash.pipeline import make_pipeline
    >>> from skhash.retrieval import TwoStageRetriever
    >>> make_pipeline(StandardScaler(), TwoStageRetriever(), modalities=None)
    Pipeline(modalities=None,
             steps=[('standardscaler', StandardScaler()),
                    ('twostageretriever', TwoStageRetriever())])
    """
    named = _skpipeline.make_pipeline(*steps).steps
    return Pipeline(
        named,
        modalities=modalities,
        memory=memory,
        transform_input=transform_input,
        verbose=verbose,
    )
