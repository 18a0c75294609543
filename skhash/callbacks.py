"""skorch callbacks for skhash's learners: retrieval quality per epoch."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import clone
from skorch.callbacks import Callback

from skhash._base import _bare_module

__all__ = ["RetrievalScoring"]


class RetrievalScoring(Callback):
    """Record the retrieval MAP@K of the validation split at each epoch.

    At the end of every epoch, the learner's current network encodes the
    validation items (the queries) and the training items (the database)
    into the codes that ``transform`` would give if training stopped there
    (with the codebooks or ``α`` the fit would end with), indexes the
    database in a :class:`~skhash.TwoStageRetriever` and records its
    :meth:`~skhash.TwoStageRetriever.score`: for two modalities the
    harmonic mean of the MAP@K of both cross-modal directions, for one
    modality the single-modal MAP@K. The value is written to the history
    under ``name``, and ``<name>_best`` marks the epochs that improved it,
    as skorch's :class:`~skorch.callbacks.EpochScoring` does; so
    ``EarlyStopping(monitor="valid_map", lower_is_better=False)`` and
    ``Checkpoint(monitor="valid_map_best", load_best=True)`` work as on
    ``valid_acc``. With a ``Checkpoint(load_best=True)`` (or
    ``EarlyStopping(load_best=True)``) the learner keeps
    the codebooks (or ``α``) of the restored epoch too, so the model after
    ``fit`` scores exactly the value recorded at its best epoch.

    It needs the learner's ``train_split`` (unless ``on_train=True``) and the
    items' labels ``y`` (passed to ``fit``; :class:`~skhash.hashing.DJSRHHasher`
    uses them for this score only). The search reuses the retriever's
    compiled kernels, so an epoch's score costs about one ``transform`` of
    the training and validation items plus one search.

    Read more in the :ref:`User Guide <training>`.

    Parameters
    ----------
    k : int, default=50
        The cut-off ``K`` of MAP@K (clipped to the number of training items).
    name : str, default="valid_map"
        The history key.
    lower_is_better : bool, default=False
        Whether a lower score is better (for ``<name>_best``); MAP is higher
        is better.
    on_train : bool, default=False
        Score the training items as queries (against themselves, each one's
        own row included) instead of the validation split.
    retriever : TwoStageRetriever, default=None
        The search to score with (cloned each epoch, its ``n_neighbors`` set
        to ``k``); None uses ``TwoStageRetriever()``, the learners' default
        search.
    direction : str, default=None
        A single direction such as ``"img->txt"``; None scores both cross
        directions of a two-modality learner (their harmonic mean).
    variant : {"djsrh", "deephash", "full"}, default="djsrh"
        Normalisation of AP@K, as for :meth:`~skhash.TwoStageRetriever.score`.

    Attributes
    ----------
    best_score_ : float or None
        The best score so far.

    See Also
    --------
    skhash.TwoStageRetriever.score : The score recorded.
    skorch.callbacks.EarlyStopping : Stops on a plateau of the score.
    skorch.callbacks.Checkpoint : Keeps (and restores) the best epoch.

    Examples
    --------
    >>> import numpy as np
    >>> from skorch.callbacks import EarlyStopping
    >>> from skhash import HQHasher, MultiModal
    >>> from skhash.callbacks import RetrievalScoring
    >>> rng = np.random.RandomState(0)
    >>> y = rng.randint(0, 3, 90)
    >>> X = MultiModal(img=rng.randn(90, 8) + y[:, None],
    ...                txt=rng.randn(90, 5) - y[:, None])
    >>> hq = HQHasher(n_bits=16, n_codebooks=2, n_codewords=8, max_epochs=4,
    ...               hidden_layer_sizes=(16,), train_split=0.25, random_state=0,
    ...               callbacks=[RetrievalScoring(k=10),
    ...                          EarlyStopping(monitor="valid_map", patience=3,
    ...                                        lower_is_better=False)])
    >>> hq = hq.fit(X, y)
    >>> "valid_map" in hq.history_[-1] and "valid_loss" in hq.history_[-1]
    True
    """

    def __init__(
        self,
        k=50,
        name="valid_map",
        lower_is_better=False,
        on_train=False,
        retriever=None,
        direction=None,
        variant="djsrh",
    ):
        self.k = k
        self.name = name
        self.lower_is_better = lower_is_better
        self.on_train = on_train
        self.retriever = retriever
        self.direction = direction
        self.variant = variant

    def initialize(self):
        if (
            isinstance(self.k, (bool, np.bool_))
            or not isinstance(self.k, numbers.Integral)
            or self.k < 1
        ):
            raise ValueError(
                f"RetrievalScoring(k={self.k!r}): k must be a positive int (bool "
                "is not accepted), e.g. k=50."
            )
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(
                f"RetrievalScoring(name={self.name!r}): name must be a non-empty "
                "string, e.g. name='valid_map'."
            )
        self.best_score_ = None
        return self

    @staticmethod
    def _learner(net):
        watch = dict(getattr(net, "callbacks_", [])).get("loss_watch")
        learner = getattr(watch, "learner", None)
        if learner is None:
            raise TypeError(
                "RetrievalScoring scores the codes of a skhash learner: pass it "
                "in the learner's callbacks, e.g. HQHasher(callbacks="
                "[RetrievalScoring()], train_split=0.2)."
            )
        return learner

    def on_train_begin(self, net, **kwargs):
        self._learner(net)
        if not self.on_train and net.train_split is None:
            raise ValueError(
                f"RetrievalScoring(name={self.name!r}) scores the validation "
                "split, but the learner has train_split=None; pass e.g. "
                "train_split=0.2 (or on_train=True to score the training items)."
            )
        scores = [
            row[self.name] for row in net.history if self.name in row
        ]  # a warm start continues the history
        if scores:
            self.best_score_ = (min if self.lower_is_better else max)(scores)

    def _codes(self, learner, net, embeddings, state):
        from skhash._codes import CodeSet

        view = learner._epoch_view(state)
        parts = {
            m: view._codes_from_embeddings(m, emb) for m, emb in embeddings.items()
        }
        if len(parts) == 1:
            return next(iter(parts.values()))
        return CodeSet.from_modalities(**parts)

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        from skhash.retrieval import TwoStageRetriever

        learner = self._learner(net)
        queries = dataset_train if self.on_train else dataset_valid
        if queries is None:
            raise ValueError(
                f"RetrievalScoring(name={self.name!r}) found no validation split "
                "at the end of the epoch; pass train_split to the learner."
            )
        db_emb = learner._embed_training_data(net, dataset_train.X)
        state = learner._epoch_state(net, db_emb)
        database = self._codes(learner, net, db_emb, state)
        if queries is dataset_train:
            q_emb = db_emb
        else:
            q_emb = {
                m: learner._embed(net, m, queries.X[m], net.device)
                for m in _bare_module(net.module_).towers
            }
        query_codes = self._codes(learner, net, q_emb, state)
        retriever = (
            TwoStageRetriever() if self.retriever is None else clone(self.retriever)
        )
        retriever.set_params(n_neighbors=min(int(self.k), len(dataset_train)))
        retriever.fit(database, np.asarray(dataset_train.y))
        score = float(
            retriever.score(
                query_codes,
                np.asarray(queries.y),
                direction=self.direction,
                variant=self.variant,
            )
        )
        best = self.best_score_
        is_best = (
            best is None
            or (self.lower_is_better and score < best)
            or (not self.lower_is_better and score > best)
        )
        if is_best:
            self.best_score_ = score
        net.history.record(self.name, score)
        net.history.record(f"{self.name}_best", bool(is_best))
