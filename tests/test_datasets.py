import numpy as np
import pytest

from skhash import MultiModal
from skhash.datasets import load_wiki


def test_load_wiki_standard_split():
    wiki = load_wiki()
    assert wiki.X_img.shape == (2866, 128) and wiki.X_txt.shape == (2866, 10)
    assert len(wiki.train_idx) == 2173 and len(wiki.test_idx) == 693
    assert np.intersect1d(wiki.train_idx, wiki.test_idx).size == 0
    np.testing.assert_array_equal(wiki.Y.argmax(1), wiki.y)
    np.testing.assert_allclose(wiki.X_txt.sum(1), 1.0, atol=1e-6)
    assert isinstance(wiki.X_train, MultiModal)
    np.testing.assert_array_equal(wiki.X_test["img"], wiki.X_img[wiki.test_idx])
    assert "Rasiwasia" in wiki.DESCR
    X_tr, X_te, y_tr, y_te = load_wiki(return_X_y=True)
    np.testing.assert_array_equal(y_te, wiki.y[wiki.test_idx])


def test_load_wiki_bad_split():
    with pytest.raises(ValueError, match="split must be 'standard'"):
        load_wiki(split="random")
