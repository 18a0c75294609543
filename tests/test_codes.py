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


def _code_set(parts):
    emb, cb, codes = parts
    return CodeSet(
        embedding=emb,
        bits=pack_bits(emb),
        codes=codes,
        n_bits=12,
        codebooks=cb,
        codebook_kind="additive",
    )


@pytest.mark.parametrize(
    "key, rows",
    [
        (2, [2]),
        (-1, [5]),
        (np.int64(3), [3]),
        (np.array(2), [2]),  # a 0-d integer array is one row, as an int
        (np.array(-1, dtype=np.int32), [5]),
        (slice(1, 4), [1, 2, 3]),
        (Ellipsis, list(range(6))),
        ([0, 2], [0, 2]),
        ([], []),
        (np.array([4, 1]), [4, 1]),
        (np.array([True, False] * 3), [0, 2, 4]),
        ([False, True] * 3, [1, 3, 5]),
        ((2,), [2]),
    ],
)
def test_row_keys_keep_parts_2d(parts, key, rows):
    emb, _, codes = parts
    sub = _code_set(parts)[key]
    assert len(sub) == sub.n_samples == len(rows)
    assert sub.embedding.shape == (len(rows), 12) and sub.bits.shape == (len(rows), 2)
    np.testing.assert_array_equal(sub.embedding, emb[rows])
    np.testing.assert_array_equal(sub.codes, codes[rows])
    assert sub.n_bits == 12


def test_row_key_pandas_boolean_series(parts):
    pd = pytest.importorskip("pandas")
    sub = _code_set(parts)[pd.Series([True, False, True, False, False, True])]
    np.testing.assert_array_equal(sub.embedding, parts[0][[0, 2, 5]])


@pytest.mark.parametrize(
    "key, error, match",
    [
        (None, TypeError, "indexed with None"),
        (True, TypeError, "indexed with True"),  # would select row 1
        (False, TypeError, "indexed with False"),  # would select row 0
        (np.True_, TypeError, "indexed with np.True_"),
        (np.array(True), TypeError, r"indexed with array\(True\)"),
        (1.0, TypeError, "indexed with 1.0"),
        (np.array([0.0, 1.0]), TypeError, "of type ndarray"),
        (np.array([[0, 1], [2, 3]]), IndexError, "2-D int64 array of shape"),
        (np.ones((6, 1), dtype=bool), IndexError, "2-D bool array"),
        (np.array([True, False]), IndexError, "mask has length 2 but the CodeSet"),
        (6, IndexError, "row 6 is out of range for 6 rows"),
    ],
)
def test_row_keys_refused(parts, key, error, match):
    cs = _code_set(parts)
    with pytest.raises(error, match=match) as exc:
        cs[key]
    if "out of range" not in match:
        assert "a 1-D boolean mask of length n_samples=6" in str(exc.value)


@pytest.mark.parametrize(
    "n_bits, match",
    [
        (20, r"2 bytes per item but n_bits=20 needs 3.*between 9 and 16"),
        (3, r"2 bytes per item but n_bits=3 needs 1"),
        (-3, r"n_bits=-3 must be >= 1"),
        (0, r"n_bits=0 must be >= 1"),
        (True, "bool is not accepted"),
        (12.0, "must be a positive int"),
    ],
)
def test_unpack_bits_checks_n_bits_against_width(n_bits, match):
    bits = pack_bits(np.ones((1, 12)))
    with pytest.raises(ValueError, match=match):
        unpack_bits(bits, n_bits)
    for ok in (9, 12, 16, np.int64(16)):
        assert unpack_bits(bits, ok).shape == (1, int(ok))


def test_n_bits_is_none_without_bits(parts):
    emb, cb, codes = parts
    cs = _code_set(parts)
    w = cs.without("bits")
    assert not w.has("bits") and w.n_bits is None and "n_bits" not in repr(w)
    assert w.compact_bytes_per_item == 2 * 2 / 8  # the codes only
    assert cs.without("embedding").n_bits == 12 and cs[1:3].n_bits == 12
    # n_bits describes bits: given without them it is dropped (still validated)
    e = CodeSet(embedding=emb, n_bits=16)
    assert e.n_bits is None and e.compact_bytes_per_item == 0.0
    with pytest.raises(ValueError, match="must be >= 1"):
        CodeSet(embedding=emb, n_bits=0)
    again = pickle.loads(pickle.dumps(w))
    assert again.n_bits is None
    # from_modalities compares n_bits among the modalities holding bits only
    plain = CodeSet(embedding=emb, bits=pack_bits(emb), n_bits=12)
    both = CodeSet.from_modalities(
        img=plain.without("bits"), txt=CodeSet(embedding=emb)
    )
    assert both.n_bits is None
    mixed = CodeSet.from_modalities(txt=CodeSet(embedding=emb), img=plain)
    assert mixed.n_bits == 12 and mixed.without("bits").n_bits is None
    with pytest.raises(ValueError, match=r"n_bits=16, expected 12 .*'img'"):
        CodeSet.from_modalities(
            img=CodeSet(bits=pack_bits(emb), n_bits=12),
            txt=CodeSet(embedding=emb),
            aud=CodeSet(bits=pack_bits(emb)),
        )


@pytest.mark.parametrize(
    "signs, match",
    [
        (np.array([[np.nan, 1.0]], dtype=object), "row 0, column 0"),
        (np.array([[1.0, None]], dtype=object), "row 0, column 1"),
        (np.array([[1.0, "a"]], dtype=object), "dtype object must hold real"),
        (np.array([[1 + 1j, -1]]), "got dtype complex128"),
        (np.array([["1", "-1"]]), "must be real numbers"),
    ],
)
def test_pack_bits_refuses_object_nan_and_complex(signs, match):
    with pytest.raises(ValueError, match=match):
        pack_bits(signs)


def test_pack_bits_object_and_bool_inputs_unchanged():
    signs = np.array([[1, -1, 1, 0, 2, -3, 1, 1, -1]])
    expected = np.packbits(signs > 0, axis=1)
    np.testing.assert_array_equal(pack_bits(signs.astype(object)), expected)
    np.testing.assert_array_equal(pack_bits(signs > 0), expected)
    np.testing.assert_array_equal(pack_bits(signs.astype(np.int8)), expected)


def test_fingerprint_same_for_signed_zero():
    def fp(cb):
        return CodeSet(
            codes=np.zeros((1, 1), int), codebooks=cb, codebook_kind="additive"
        ).fingerprint

    z = np.zeros((1, 2, 3), np.float32)
    assert fp(z) == fp(-z)
    assert fp(z) != fp(z + 1) and fp(z + 1) == fp(np.ones((1, 2, 3)))


def test_get_bad_part_names_the_parts(parts):
    cs = _code_set(parts)
    with pytest.raises(ValueError, match=r"part must be one of \('embedding'"):
        cs.get("X", "foo")
    with pytest.raises(KeyError, match="No modality 'Y'"):
        cs.get("Y", "bits")
    np.testing.assert_array_equal(cs.get("X", "codes"), parts[2])
