import pickle

import numpy as np
import pytest

from skhash import CodeSet, pack_bits, unpack_bits


@pytest.fixture
def parts():
    rng = np.random.RandomState(0)
    emb = rng.randn(6, 12).astype(np.float32)
    cb = rng.randn(2, 4, 12).astype(np.float32)
    codes = rng.randint(0, 4, size=(6, 2))
    return emb, cb, codes


@pytest.mark.parametrize("n_bits", [1, 7, 8, 12, 64, 70])
def test_pack_unpack_roundtrip(n_bits):
    rng = np.random.RandomState(n_bits)
    signs = np.where(rng.rand(5, n_bits) > 0.5, 1, -1)
    packed = pack_bits(signs)
    assert packed.dtype == np.uint8 and packed.shape == (5, (n_bits + 7) // 8)
    np.testing.assert_array_equal(unpack_bits(packed, n_bits), signs)
    # numpy packbits order: first bit is the most significant of byte 0
    np.testing.assert_array_equal(packed, np.packbits(signs > 0, axis=1))


def test_single_modality_contract(parts):
    emb, cb, codes = parts
    cs = CodeSet(
        embedding=emb,
        bits=pack_bits(emb),
        codes=codes,
        n_bits=12,
        codebooks=cb,
        codebook_kind="additive",
    )
    assert cs.embedding.dtype == np.float32 and cs.bits.shape == (6, 2)
    assert cs.codes.dtype == np.uint8 and cs.codebooks.shape == (2, 4, 12)
    assert cs.n_codebooks == 2 and cs.n_codewords == 4
    sub = cs[1:3]
    assert len(sub) == 2 and sub.codebooks is cs.codebooks
    np.testing.assert_array_equal(sub.codes, codes[1:3])
    assert cs.nbytes["bits"] == 12 and cs.nbytes["codes"] == 12
    assert cs.compact_bytes_per_item == 12 / 8 + 2 * 2 / 8
    assert not cs.without("embedding").has("embedding")
    again = pickle.loads(pickle.dumps(cs))
    np.testing.assert_array_equal(again.bits, cs.bits)


def test_cross_modal_by_name(parts):
    emb, cb, codes = parts
    a = CodeSet(embedding=emb, codes=codes, codebooks=cb, codebook_kind="additive")
    b = CodeSet(
        embedding=-emb, codes=codes[::-1], codebooks=cb, codebook_kind="additive"
    )
    both = CodeSet.from_modalities(img=a, txt=b)
    assert both.modalities == ("img", "txt")
    np.testing.assert_array_equal(both["txt"].embedding, -emb)
    np.testing.assert_array_equal(both[[0, 2]]["img"].codes, codes[[0, 2]])
    with pytest.raises(AttributeError, match=r"codes\['img'\]\.bits"):
        both.bits
    other = CodeSet(
        embedding=emb, codes=codes, codebooks=cb + 1, codebook_kind="additive"
    )
    with pytest.raises(ValueError, match="does not share the codebooks"):
        CodeSet.from_modalities(img=a, txt=other)


def test_validation(parts):
    emb, cb, codes = parts
    with pytest.raises(ValueError, match="at least one of embedding"):
        CodeSet()
    with pytest.raises(ValueError, match="need the codebooks"):
        CodeSet(codes=codes)
    with pytest.raises(ValueError, match=r"lie in \[0, 4\)"):
        CodeSet(codes=codes + 4, codebooks=cb, codebook_kind="additive")
    # product codebooks overlap nowhere (their distances drop cross terms)
    with pytest.raises(ValueError, match="not block-diagonal"):
        CodeSet(codes=codes, codebooks=cb, codebook_kind="product")
    block = np.array(cb)
    block[0, :, 6:] = block[1, :, :6] = 0.0  # product_blocks(12, 2)
    CodeSet(codes=codes, codebooks=block, codebook_kind="product")
    # codes are stored as uint16: more codewords would wrap
    big = np.zeros((1, 65537, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="at most 65,536 are supported"):
        CodeSet(codes=np.full((2, 1), 65536), codebooks=big, codebook_kind="additive")
    with pytest.raises(ValueError, match="at least one column"):
        CodeSet(embedding=np.zeros((3, 0), dtype=np.float32))
    with pytest.raises(ValueError, match="packed uint8"):
        CodeSet(bits=np.ones((6, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="n_bits=20 needs 3"):
        CodeSet(bits=np.ones((6, 2), dtype=np.uint8), n_bits=20)
    with pytest.raises(ValueError, match="different numbers of rows"):
        CodeSet(embedding=emb, bits=pack_bits(emb[:3]))
    with pytest.raises(ValueError, match="codebook_kind must be one of"):
        CodeSet(codes=codes, codebooks=cb, codebook_kind="residual")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_pack_bits_refuses_non_finite_signs(value):
    signs = np.ones((3, 8))
    signs[1, 4] = value
    with pytest.raises(ValueError, match="row 1, column 4"):
        pack_bits(signs)
