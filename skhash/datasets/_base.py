"""Loaders for the benchmark data shipped with skhash."""

from __future__ import annotations

from importlib import resources

import numpy as np
from sklearn.utils import Bunch

from skhash._modalities import MultiModal

__all__ = ["load_wiki"]

_WIKI_FILE = "wiki.npz"


def load_wiki(*, return_X_y=False, split="standard"):
    """Load the Wiki image–text benchmark (2,866 pairs, 10 classes).

    The Wiki dataset of Rasiwasia et al. (ACM Multimedia 2010): pairs of a
    Wikipedia image and the text section it illustrates, each with one of 10
    categories. Images are 128-bin SIFT bag-of-visual-words histograms, texts
    10-topic LDA proportions. It ships inside skhash (about 1 MB), so this
    function never downloads anything.

    Read more in the :ref:`User Guide <datasets>`.

    Parameters
    ----------
    return_X_y : bool, default=False
        If True, return ``(X_train, X_test, y_train, y_test)`` as
        :class:`~skhash.MultiModal` and label arrays instead of a Bunch.
    split : {"standard"}, default="standard"
        The split: "standard" is the original one, 2,173 training pairs
        (the retrieval database) and 693 test pairs (the queries).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``X_img`` (2866, 128) and ``X_txt`` (2866, 10) float64 arrays,
        ``y`` class ids (2866,), ``Y`` one-hot labels (2866, 10),
        ``train_idx`` and ``test_idx``, ``X`` a MultiModal of all pairs,
        ``X_train``/``X_test``/``y_train``/``y_test`` for the split,
        ``target_names``, ``DESCR`` (provenance and citation).
    (X_train, X_test, y_train, y_test) : tuple
        If ``return_X_y`` is True.

    Notes
    -----
    Provenance, license and the conversion are in ``DESCR``. Cite: N.
    Rasiwasia et al., "A New Approach to Cross-Modal Multimedia Retrieval",
    ACM Multimedia 2010.

    Examples
    --------
    >>> from skhash.datasets import load_wiki
    >>> wiki = load_wiki()
    >>> wiki.X_img.shape, wiki.X_txt.shape, wiki.y.shape
    ((2866, 128), (2866, 10), (2866,))
    >>> X_train, X_test, y_train, y_test = load_wiki(return_X_y=True)
    >>> len(X_train), len(X_test)
    (2173, 693)
    """
    if split != "standard":
        raise ValueError(f"split must be 'standard'; got {split!r}.")
    data_dir = resources.files("skhash.datasets") / "data"
    with resources.as_file(data_dir / _WIKI_FILE) as path, np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    descr = (data_dir / "wiki_README.md").read_text(encoding="utf-8")
    X = MultiModal(img=arrays["X_img"], txt=arrays["X_txt"])
    tr, te = arrays["train_idx"], arrays["test_idx"]
    y = arrays["y"]
    if return_X_y:
        return X[tr], X[te], y[tr], y[te]
    return Bunch(
        X_img=arrays["X_img"],
        X_txt=arrays["X_txt"],
        y=y,
        Y=arrays["Y"],
        train_idx=tr,
        test_idx=te,
        X=X,
        X_train=X[tr],
        X_test=X[te],
        y_train=y[tr],
        y_test=y[te],
        target_names=arrays["class_names"],
        text_id=arrays["text_id"],
        image_id=arrays["image_id"],
        DESCR=descr,
    )
