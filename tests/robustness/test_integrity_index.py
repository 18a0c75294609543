"""Integrity of the search index: tampered files, foreign codebooks, padding
bits, labels that cannot be stored or matched, counts given as bools, and the
immutability of CodeSet (issue 12).

Every tampered file must fail ``load`` with an ``IndexFormatError`` naming the
file and what is wrong, so that nothing damaged reaches a search kernel.
"""

import json
import os
import pickle
import zipfile

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from skhash import CodeSet, pack_bits, unpack_bits
from skhash.exceptions import IndexFormatError
from skhash.metrics import n_relevant, ranked_relevance, relevance
from skhash.quantization import product_blocks
from skhash.retrieval import TwoStageRetriever, _schema

N, M, K, D, N_BITS = 50, 3, 16, 8, 12
BACKENDS = ["numpy", "numba"]


def _codes(seed=0, n=N, codebooks=None, kind="additive", modality="X"):
    rng = np.random.RandomState(seed)
    C = rng.randn(M, K, D).astype(np.float32) if codebooks is None else codebooks
    emb = rng.randn(n, D).astype(np.float32)
    return CodeSet(
        embedding=emb,
        bits=pack_bits(rng.randn(n, N_BITS)),
        codes=rng.randint(K, size=(n, M)),
        n_bits=N_BITS,
        codebooks=C,
        codebook_kind=kind,
        modality=modality,
    )


DB = _codes()
Y = np.arange(N) % 3


def _fitted(rerank="aqd", y=Y, **params):
    return TwoStageRetriever(n_neighbors=5, alpha=10, rerank=rerank, **params).fit(
        DB, y
    )


# --------------------------------------------------------------------------- #
# Tampered files
# --------------------------------------------------------------------------- #


def _meta(path):
    with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
        return json.load(f)


def _write_meta(path, meta, *, reseal=True):
    """Write ``meta``; re-sealed (as a consistent writer would) so that each
    field's own check is what is tested. The seal itself is tested apart."""
    if reseal and _schema.SEAL in meta:
        meta = _schema.seal(meta)
    with open(os.path.join(path, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f)


def _edit_meta(fn):
    def tamper(path):
        meta = _meta(path)
        fn(meta)
        _write_meta(path, meta)

    return tamper


def _edit_array(name, fn):
    def tamper(path):
        file = os.path.join(path, _meta(path)["arrays"][name]["file"])
        a = np.load(file)
        np.save(file, fn(a.copy()), allow_pickle=True)

    return tamper


def _set(a, where, value):
    a[where] = value
    return a


def _truncate(name, n_bytes):
    def tamper(path):
        file = os.path.join(path, _meta(path)["arrays"][name]["file"])
        with open(file, "r+b") as f:
            f.truncate(os.path.getsize(file) - n_bytes)

    return tamper


def _write_file(name, data):
    def tamper(path):
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)

    return tamper


def _remove_array(name):
    def tamper(path):
        os.remove(os.path.join(path, _meta(path)["arrays"][name]["file"]))

    return tamper


def _garbage_header(path):
    file = os.path.join(path, _meta(path)["arrays"]["X.codes"]["file"])
    with open(file, "r+b") as f:
        f.seek(10)
        f.write(b"{'descr': ???")


def _fortran(path):
    file = os.path.join(path, _meta(path)["arrays"]["X.bits"]["file"])
    np.save(file, np.asfortranarray(np.load(file)))


def _old_format(path):
    meta = _meta(path)
    for entry in meta["arrays"].values():
        entry.pop("sha256")
    meta.pop(_schema.SEAL)  # the files of before the checksums had no seal
    _write_meta(path, meta)


def _flip_a_code(path):  # still in range: only the checksum sees it
    file = os.path.join(path, _meta(path)["arrays"]["X.codes"]["file"])
    a = np.load(file)
    a[7, 1] = (a[7, 1] + 1) % K
    np.save(file, a)


def _other_codebooks_same_fingerprint_removed(path):
    meta = _meta(path)
    meta.pop("codebooks_fingerprint")
    _write_meta(path, meta)
    file = os.path.join(path, meta["arrays"]["codebooks"]["file"])
    np.save(file, np.ones((M + 1, K, D), np.float32))


DIR_TAMPERS = [
    # (id, rerank, tamper, message fragment, file named in the message)
    (
        "code-out-of-range",
        "aqd",
        _edit_array("X.codes", lambda a: _set(a, (3, 1), 255)),
        "a code is 255, out of range for K = 16 codewords",
        "X.codes.npy",
    ),
    (
        "meta-claims-more-items",
        "aqd",
        _edit_meta(lambda m: m.update(n_samples_fit=500)),
        "holds 50 rows but the index has 500 items",
        "X.bits.npy",
    ),
    (
        "meta-claims-fewer-items",
        "aqd",
        _edit_meta(lambda m: m.update(n_samples_fit=20)),
        "the metadata says",
        "npy",
    ),
    (
        "bits-file-cut-short",
        "aqd",
        _truncate("X.bits", 7),
        "is truncated",
        "X.bits.npy",
    ),
    (
        "nan-codebooks",
        "aqd",
        _edit_array("codebooks", lambda a: _set(a, (0, 0, 0), np.nan)),
        "the codebooks contain NaN or inf",
        "codebooks.npy",
    ),
    (
        "codebooks-changed",
        "aqd",
        _edit_array("codebooks", lambda a: a + 1),
        "do not match the fingerprint in the metadata",
        "codebooks.npy",
    ),
    (
        "codebooks-reshaped",
        "aqd",
        _other_codebooks_same_fingerprint_removed,
        "not uint8 with M = 4 codes per item",
        "X.codes.npy",
    ),
    (
        "meta-not-json",
        "aqd",
        _write_file("meta.json", b"{not json"),
        "not valid JSON",
        "meta.json",
    ),
    (
        "meta-foreign-format",
        "aqd",
        _write_file("meta.json", b'{"format": "faiss", "version": 1}'),
        "was not written by TwoStageRetriever.save",
        "meta.json",
    ),
    (
        "meta-a-list",
        "aqd",
        _write_file("meta.json", b"[1, 2]"),
        "was not written by TwoStageRetriever.save",
        "meta.json",
    ),
    (
        "meta-not-utf8",
        "aqd",
        _write_file("meta.json", b"\xff\xfe\x00"),
        "cannot be read",
        "meta.json",
    ),
    (
        "newer-version",
        "aqd",
        _edit_meta(lambda m: m.update(version=99)),
        "format version 99 was written by a newer skhash",
        "meta.json",
    ),
    (
        "unknown-version",
        "aqd",
        _edit_meta(lambda m: m.update(version="2")),
        "unknown format version '2'",
        "meta.json",
    ),
    (
        "missing-key",
        "aqd",
        _edit_meta(lambda m: m.pop("parts")),
        "the metadata lacks ['parts']",
        "meta.json",
    ),
    (
        "n-bits-a-bool",
        "aqd",
        _edit_meta(lambda m: m.update(n_bits=True)),
        "n_bits=True is not an int >= 1",
        "meta.json",
    ),
    (
        "n-bits-inconsistent-with-width",
        "aqd",
        _edit_meta(lambda m: m.update(n_bits=20)),
        "ceil(n_bits / 8) = 3 bytes per item",
        "X.bits.npy",
    ),
    (
        "n-samples-a-string",
        "aqd",
        _edit_meta(lambda m: m.update(n_samples_fit="50")),
        "n_samples_fit='50' is not an int >= 1",
        "meta.json",
    ),
    (
        "duplicate-modalities",
        "aqd",
        _edit_meta(lambda m: m.update(modalities=["X", "X"])),
        "is not a list of distinct names",
        "meta.json",
    ),
    (
        "unknown-rerank",
        "aqd",
        _edit_meta(lambda m: m.update(rerank_fit="cosine")),
        "rerank_fit='cosine' is not one of",
        "meta.json",
    ),
    (
        "parts-inconsistent-with-rerank",
        "exact",
        _edit_meta(lambda m: m["parts"].update(X=["bits", "codes"])),
        "needs ['bits', 'codes', 'embedding']",
        "meta.json",
    ),
    (
        "codes-without-codebooks",
        "aqd",
        _edit_meta(lambda m: m.update(codebook_kind=None)),
        "stores codes but there are no codebooks",
        "meta.json",
    ),
    (
        "invalid-parameter",
        "aqd",
        _edit_meta(lambda m: m["params"].update(alpha=-1)),
        "invalid parameters",
        "meta.json",
    ),
    (
        "unknown-parameter",
        "aqd",
        _edit_meta(lambda m: m["params"].update(colour="red")),
        "the parameters ['colour'] are not parameters of TwoStageRetriever",
        "meta.json",
    ),
    (
        "file-outside-the-directory",
        "aqd",
        _edit_meta(lambda m: m["arrays"]["X.bits"].update(file="../evil.npy")),
        "which is not a .npy file of this directory",
        "meta.json",
    ),
    (
        "missing-array-file",
        "aqd",
        _remove_array("X.codes"),
        "the file is missing",
        "X.codes.npy",
    ),
    (
        "bits-of-another-dtype",
        "aqd",
        _edit_array("X.bits", lambda a: a.astype(np.int64)),
        "bits have dtype int64",
        "X.bits.npy",
    ),
    (
        "bits-of-another-width",
        "aqd",
        _edit_array("X.bits", lambda a: np.concatenate([a, a[:, :1]], axis=1)),
        "not uint8 with ceil(n_bits / 8) = 2 bytes per item",
        "X.bits.npy",
    ),
    (
        "padding-bits-set",
        "aqd",
        _edit_array("X.bits", lambda a: _set(a, (4, 1), a[4, 1] | 0x0F)),
        "bits beyond n_bits=12 are set",
        "X.bits.npy",
    ),
    (
        "codes-of-another-dtype",
        "aqd",
        _edit_array("X.codes", lambda a: a.astype(np.int32)),
        "codes have dtype int32",
        "X.codes.npy",
    ),
    (
        "nan-embeddings",
        "exact",
        _edit_array("X.embedding", lambda a: _set(a, (2, 2), np.nan)),
        "the embeddings contain NaN or inf",
        "X.embedding.npy",
    ),
    (
        "nan-sqnorms",
        "aqd-l2",
        _edit_array("X.sqnorms", lambda a: _set(a, 5, np.inf)),
        "the sqnorms contain NaN or inf",
        "X.sqnorms.npy",
    ),
    (
        "labels-of-objects",
        "aqd",
        _edit_array("y", lambda a: a.astype(object)),
        "holds Python objects",
        "y.npy",
    ),
    (
        "labels-2d-of-another-length",
        "aqd",
        _edit_array("y", lambda a: a[:40]),
        "holds 40 rows but the index has 50 items",
        "y.npy",
    ),
    (
        "labels-of-datetimes",
        "aqd",
        _edit_array("y", lambda a: a.astype("datetime64[D]")),
        "labels of dtype datetime64[D]",
        "y.npy",
    ),
    (
        "garbage-npy-header",
        "aqd",
        _garbage_header,
        "not a readable .npy file",
        "X.codes.npy",
    ),
    (
        "fortran-ordered-array",
        "aqd",
        _fortran,
        "Fortran-ordered",
        "X.bits.npy",
    ),
]


@pytest.mark.parametrize(
    "rerank, tamper, message, file",
    [pytest.param(*t[1:], id=t[0]) for t in DIR_TAMPERS],
)
def test_a_tampered_directory_never_loads(tmp_path, rerank, tamper, message, file):
    path = _fitted(rerank).save(tmp_path / "index")
    TwoStageRetriever.load(path, verify=True)  # whole before the tampering
    tamper(path)
    for mode in (None, "r", "r+"):
        with pytest.raises(IndexFormatError) as info:
            TwoStageRetriever.load(path, mmap_mode=mode)
        assert message in str(info.value)
        assert file in str(info.value)
        assert str(tmp_path) in str(info.value)


def test_checksums_catch_a_change_load_cannot_see(tmp_path):
    est = _fitted()
    path = est.save(tmp_path / "index")
    _flip_a_code(path)
    TwoStageRetriever.load(path)  # a valid index, only different
    with pytest.raises(
        IndexFormatError, match=r"rows 0:50 does not match its checksum"
    ):
        TwoStageRetriever.load(path, verify=True)
    npz = est.save(tmp_path / "index.npz")
    with zipfile.ZipFile(npz) as z:
        members = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(str(np.load(npz)["__meta__"]))
    meta["arrays"]["y"]["sha256"][0][1] = "0" * 64
    np.savez(
        npz,
        __meta__=np.array(json.dumps(meta)),
        **{n[:-4]: np.load(npz)[n[:-4]] for n in members if n != "__meta__.npy"},
    )
    with pytest.raises(
        IndexFormatError, match=r"array 'y'.*does not match its checksum"
    ):
        TwoStageRetriever.load(npz, verify=True)


def test_verify_needs_checksums(tmp_path):
    path = _fitted().save(tmp_path / "index")
    _old_format(path)
    assert TwoStageRetriever.load(path).n_samples_fit_ == N
    with pytest.raises(IndexFormatError, match="no checksum in the metadata"):
        TwoStageRetriever.load(path, verify=True)


def test_a_version_1_directory_still_loads_and_grows(tmp_path):
    """What the previous skhash wrote: <array>.npy files, no schema."""
    est = _fitted()
    path = est.save(tmp_path / "index")
    meta = _meta(path)
    for key in ("arrays", "generation", "codebooks_fingerprint", _schema.SEAL):
        meta.pop(key)
    meta["version"] = 1
    _write_meta(path, meta)
    loaded = TwoStageRetriever.load(path, mmap_mode="r+")
    for a, b in zip(loaded.kneighbors(DB[:5]), est.kneighbors(DB[:5])):
        np.testing.assert_array_equal(a, b)
    more = _codes(seed=0, n=N + 10, codebooks=DB.codebooks)[N:]
    loaded.add(more, np.arange(10) % 3)
    again = TwoStageRetriever.load(path, verify=True)
    assert again.n_samples_fit_ == N + 10 and _meta(path)["version"] == 2


def _npz_members(path):
    with np.load(path) as f:
        return {n: f[n] for n in f.files}


def _rewrite_npz(fn):
    def tamper(path):
        members = _npz_members(path)
        fn(members)
        np.savez(path, **members)

    return tamper


def _npz_meta(fn):
    def edit(members):
        meta = json.loads(str(members["__meta__"]))
        fn(meta)
        if _schema.SEAL in meta:  # a consistent writer: see _write_meta
            meta = _schema.seal(meta)
        members["__meta__"] = np.array(json.dumps(meta))

    return edit


def _damage_bytes(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 3)
        f.write(b"\x00garbage\x00" * 4)


NPZ_TAMPERS = [
    (
        "code-out-of-range",
        _rewrite_npz(lambda m: m["X.codes"].__setitem__((0, 0), 255)),
        "(array 'X.codes'): a code is 255, out of range for K = 16",
    ),
    (
        "missing-array",
        _rewrite_npz(lambda m: m.pop("X.bits")),
        "(array 'X.bits'): the array is missing",
    ),
    (
        "extra-array",
        _rewrite_npz(lambda m: m.update(extra=np.ones(3))),
        "holds arrays ['extra'] that its metadata does not list",
    ),
    (
        "meta-not-json",
        _rewrite_npz(lambda m: m.update(__meta__=np.array("{oops"))),
        "(__meta__): not valid JSON",
    ),
    (
        "meta-not-a-string",
        _rewrite_npz(lambda m: m.update(__meta__=np.arange(3))),
        "'__meta__' is not a JSON string",
    ),
    (
        "meta-claims-more-items",
        _rewrite_npz(_npz_meta(lambda m: m.update(n_samples_fit=500))),
        "0 rows" if False else "rows, but n_samples_fit=500",
    ),
    (
        "truncated",
        lambda p: open(p, "r+b").truncate(os.path.getsize(p) // 2),
        "not a .npz file, or a truncated one",
    ),
    ("damaged-bytes", _damage_bytes, "cannot be read"),
    (
        "a-pickle",
        lambda p: open(p, "wb").write(pickle.dumps({"a": 1})),
        "neither a .npz nor a .npy file: numpy would have to unpickle it",
    ),
    (
        "a-text-file",
        lambda p: open(p, "wb").write(b"hello"),
        "neither a .npz nor a .npy file",
    ),
]


@pytest.mark.parametrize(
    "tamper, message", [pytest.param(*t[1:], id=t[0]) for t in NPZ_TAMPERS]
)
def test_a_tampered_npz_never_loads(tmp_path, tamper, message):
    path = _fitted().save(tmp_path / "index.npz")
    tamper(path)
    with pytest.raises(IndexFormatError) as info:
        TwoStageRetriever.load(path)
    assert message in str(info.value) and "index.npz" in str(info.value)


@pytest.mark.parametrize(
    "path, mmap_mode, error, message",
    [
        ("missing.npz", None, FileNotFoundError, "No such file or directory"),
        ("index", "w+", ValueError, "mmap_mode must be None, 'r', 'r+' or 'c'"),
        ("empty_dir", None, IndexFormatError, "(no meta.json)"),
    ],
)
def test_load_arguments(tmp_path, path, mmap_mode, error, message):
    _fitted().save(tmp_path / "index")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(error, match=__import__("re").escape(message)):
        TwoStageRetriever.load(tmp_path / path, mmap_mode=mmap_mode)


# --------------------------------------------------------------------------- #
# Queries and additions from other codebooks; padding bits
# --------------------------------------------------------------------------- #


def _other_model(codes):
    """``codes`` with other codebooks of the same shape and kind."""
    return CodeSet(
        embedding=codes.embedding,
        bits=codes.bits,
        codes=codes.codes,
        n_bits=codes.n_bits,
        codebooks=codes.codebooks * 2.0,
        codebook_kind=codes.codebook_kind,
    )


@pytest.mark.parametrize("rerank", ["aqd", "aqd-l2", "hamming-codes"])
def test_queries_from_other_codebooks_are_rejected(rerank):
    est = _fitted(rerank)
    other = _other_model(DB[:5])
    assert other.fingerprint != DB.fingerprint
    what = "quantization codes" if rerank == "hamming-codes" else "embeddings"
    with pytest.raises(ValueError, match=f"The queries' {what} come with other"):
        est.kneighbors(other)
    with pytest.raises(ValueError, match="come with other codebooks"):
        est.score(other, Y[:5])
    with pytest.raises(ValueError, match="quantized with other codebooks"):
        est.add(other, Y[:5])
    assert est.n_samples_fit_ == N
    # the same codebooks, another CodeSet object: accepted
    same = CodeSet(
        embedding=DB.embedding[:5],
        bits=DB.bits[:5],
        codes=DB.codes[:5],
        n_bits=N_BITS,
        codebooks=DB.codebooks.copy(),
        codebook_kind="additive",
    )
    for a, b in zip(est.kneighbors(same), est.kneighbors(DB[:5])):
        np.testing.assert_array_equal(a, b)


def test_the_fingerprint_follows_the_codes(tmp_path):
    fp = DB.fingerprint
    assert isinstance(fp, str) and len(fp) == 16
    assert DB[3:9].fingerprint == fp and DB[[1, 4]].fingerprint == fp
    assert DB.without("embedding").fingerprint == fp
    both = CodeSet.from_modalities(img=DB, txt=DB[::-1])
    assert both.fingerprint == fp and both["txt"].fingerprint == fp
    # the same codebooks made block-diagonal, as product codebooks must be
    C = np.array(DB.codebooks)
    for m, block in enumerate(product_blocks(C.shape[2], C.shape[0])):
        keep = np.zeros(C.shape[2], dtype=bool)
        keep[block] = True
        C[m][:, ~keep] = 0.0
    assert _codes(codebooks=C).fingerprint != fp
    product = _codes(codebooks=C, kind="product")
    assert product.fingerprint != _codes(codebooks=C).fingerprint  # the kind too
    assert CodeSet(bits=DB.bits, n_bits=N_BITS).fingerprint is None
    assert pickle.loads(pickle.dumps(DB)).fingerprint == fp
    est = _fitted()
    assert est.codebooks_fingerprint_ == fp
    loaded = TwoStageRetriever.load(est.save(tmp_path / "i.npz"))
    assert loaded.codebooks_fingerprint_ == fp
    with pytest.raises(ValueError, match="come with other codebooks"):
        loaded.kneighbors(_other_model(DB[:3]))


def _with_junk_padding(codes):
    bits = np.array(codes.bits)
    bits[:, -1] |= np.uint8(0x0F)  # the 4 bits past n_bits=12
    return CodeSet(
        embedding=codes.embedding,
        bits=bits,
        codes=codes.codes,
        n_bits=N_BITS,
        codebooks=codes.codebooks,
        codebook_kind=codes.codebook_kind,
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rerank", ["none", "aqd"])
def test_padding_bits_never_change_a_distance(tmp_path, backend, rerank):
    est = _fitted(rerank, backend=backend)
    junk = _with_junk_padding(DB)
    dist, idx = est.set_params(alpha=0).kneighbors(junk[:10], 1)
    np.testing.assert_array_equal(dist[:, 0], 0)  # itself, at distance 0
    est.set_params(alpha=10)
    for a, b in zip(est.kneighbors(junk[:10]), est.kneighbors(DB[:10])):
        np.testing.assert_array_equal(a, b)
    # the database: fit and add clear them too
    dirty = TwoStageRetriever(n_neighbors=5, alpha=10, rerank=rerank, backend=backend)
    dirty.fit(junk[:30], Y[:30]).add(junk[30:], Y[30:])
    assert not np.any(unpack_bits(dirty._index["X"]["bits"], 16)[:, N_BITS:] > 0)
    for a, b in zip(dirty.kneighbors(DB[:10]), est.kneighbors(DB[:10])):
        np.testing.assert_array_equal(a, b)
    est.set_params(alpha=0)
    for a, b in zip(dirty.set_params(alpha=0).kneighbors(), est.kneighbors()):
        np.testing.assert_array_equal(a, b)  # X=None
    assert junk.bits[0, -1] & 0x0F  # the caller's codes are untouched


def test_codes_changed_after_the_codeset_was_made_are_rejected(tmp_path):
    """A CodeSet's parts are read-only, but the caller's own array is not."""
    codes = np.random.RandomState(0).randint(K, size=(N, M)).astype(np.uint8)
    cs = CodeSet(codes=codes, codebooks=DB.codebooks, codebook_kind="additive")
    est = TwoStageRetriever(n_neighbors=3, rerank="hamming-codes").fit(cs)
    before = est.kneighbors(DB[:4])
    assert not np.shares_memory(est._index["X"]["codes"], codes)  # its own copy
    codes[0, 0] = 200  # behind the CodeSet's back
    for a, b in zip(est.kneighbors(DB[:4]), before):  # the index is unchanged
        np.testing.assert_array_equal(a, b)
    np.save(tmp_path / "codes.npy", codes[1:])
    mapped = np.load(tmp_path / "codes.npy", mmap_mode="r")
    big = TwoStageRetriever(rerank="hamming-codes").fit(
        CodeSet(codes=mapped, codebooks=DB.codebooks, codebook_kind="additive")
    )
    assert np.shares_memory(big._index["X"]["codes"], mapped)  # not copied
    with pytest.raises(ValueError, match=r"the query codes must lie in \[0, 16\)"):
        est.kneighbors(cs[:2])
    with pytest.raises(ValueError, match=r"the codes of modality 'X' must lie"):
        TwoStageRetriever(rerank="hamming-codes").fit(cs)


# --------------------------------------------------------------------------- #
# Labels: stored exactly or refused; scored only when they can match
# --------------------------------------------------------------------------- #

WIDEN = [
    # (indexed labels, added labels, stored dtype)
    (np.array(["cat", "dog"] * 25), np.array(["horse"] * 5), "<U5"),
    (np.array([b"ab", b"cd"] * 25), np.array([b"abcdef"] * 5), "|S6"),
    (Y.astype(np.int32), np.full(5, 2**40), "int64"),
    (Y.astype(np.uint8), np.full(5, -1), "int64"),
    (Y.astype(np.uint64), np.full(5, -1), "int64"),
    (Y, np.array([3.0, 4.0, 5.0, 6.0, 7.0]), "int64"),  # whole floats
    (Y.astype(np.float32), np.full(5, 2**30 + 1), "float64"),
    (Y.astype(np.float32), np.arange(5), "float32"),
    (Y > 0, np.array([0, 1, 2, 0, 1]), "int64"),
    (
        np.eye(3, dtype=bool)[Y],
        np.eye(3, dtype=int)[: 5 % 3 + 2].repeat(2, 0)[:5],
        "bool",
    ),
]


@pytest.mark.parametrize("indexed, added, dtype", WIDEN)
@pytest.mark.parametrize("where", ["memory", "disk"])
def test_added_labels_are_stored_exactly(tmp_path, indexed, added, dtype, where):
    est = TwoStageRetriever(n_neighbors=3).fit(DB, indexed)
    if where == "disk":
        est = TwoStageRetriever.load(est.save(tmp_path / "index"), mmap_mode="r+")
    more = _codes(seed=1, n=5, codebooks=DB.codebooks)
    est.add(more, added)
    assert est.y_.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(est.y_[:N], indexed)
    np.testing.assert_array_equal(est.y_[N:], added)
    if where == "disk":
        again = TwoStageRetriever.load(tmp_path / "index", verify=True)
        assert again.y_.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(again.y_, est.y_)


REFUSE = [
    (Y, np.array([2.7, 1, 1, 1, 1]), "y holds 2.7, which is not a whole number"),
    (Y, np.full(5, 1e30), "cannot be stored exactly with the index labels"),
    (Y, np.array(["a"] * 5), "y holds strings (dtype <U1) but the index labels are"),
    (np.array(["a", "b"] * 25), np.arange(5), "y holds numbers (dtype int64) but"),
    (np.array(["a", "b"] * 25), np.array([b"a"] * 5), "y holds bytes (dtype |S1)"),
    (np.full(N, 2**63, dtype=np.uint64), np.full(5, -1), "cannot be stored exactly"),
    (Y, [1, None, 2, 3, 4], "y holds None (a missing label) at position 1"),
    (Y, [1, "a", 2, 3, 4], "y mixes label types (number 1 and str 'a')"),
    (Y, np.arange(5) + 0.5j, "y has dtype complex128"),
    (Y, np.arange(10).reshape(5, 2), "shaped like the indexed labels ()"),
]


@pytest.mark.parametrize("indexed, added, message", REFUSE)
@pytest.mark.parametrize("where", ["memory", "disk"])
def test_labels_that_cannot_be_stored_raise_and_change_nothing(
    tmp_path, indexed, added, message, where
):
    est = TwoStageRetriever(n_neighbors=3).fit(DB, indexed)
    if where == "disk":
        est = TwoStageRetriever.load(est.save(tmp_path / "index"), mmap_mode="r+")
    y_before = np.array(est.y_)
    more = _codes(seed=1, n=5, codebooks=DB.codebooks)
    with pytest.raises(ValueError) as info:
        est.add(more, added)
    assert message in str(info.value)
    assert est.n_samples_fit_ == N
    np.testing.assert_array_equal(est.y_, y_before)
    assert est.y_.dtype == y_before.dtype
    if where == "disk":
        assert TwoStageRetriever.load(tmp_path / "index").n_samples_fit_ == N


NEVER_MATCH = [
    (np.array(["a", "b", "c"])[Y], Y[:5], "y_query holds numbers (dtype int64)"),
    (Y, np.array(["0", "1", "2", "0", "1"]), "y_query holds strings (dtype <U1)"),
    (np.eye(3, dtype=int)[Y], np.eye(4, dtype=int)[:5], "y_query has 4 label columns"),
    (np.eye(3, dtype=int)[Y], Y[:5], "y_query is 1-D (class ids)"),
    (Y, np.eye(3, dtype=int)[:5], "y_query is 2-D (label indicator matrix)"),
    (Y, [0, None, 1, 1, 1], "y_query holds None"),
    (Y, [0, "a", 1, 1, 1], "y_query mixes label types"),
]


@pytest.mark.parametrize("indexed, query, message", NEVER_MATCH)
def test_labels_that_can_never_match_raise(indexed, query, message):
    est = TwoStageRetriever(n_neighbors=3).fit(DB, indexed)
    with pytest.raises(ValueError) as info:
        est.score(DB[:5], query)
    assert message in str(info.value)
    for fn in (relevance, n_relevant):
        with pytest.raises(ValueError) as info:
            fn(query, indexed)
        assert message in str(info.value)
    with pytest.raises(ValueError) as info:
        ranked_relevance(query, indexed, np.zeros((5, 2), dtype=int))
    assert message in str(info.value)


def test_labels_of_one_family_still_match():
    """ints against floats or bools, and str of other widths, are compatible."""
    np.testing.assert_array_equal(
        relevance(np.array([1.0, 2.0]), np.array([1, 2, 3])),
        [[True, False, False], [False, True, False]],
    )
    np.testing.assert_array_equal(relevance([True], [1, 0]), [[True, False]])
    np.testing.assert_array_equal(
        relevance(np.array(["cat"]), np.array(["cat", "horse"])), [[True, False]]
    )
    est = TwoStageRetriever(n_neighbors=3).fit(DB, Y)
    assert est.score(DB, Y.astype(float)) == est.score(DB, Y)


# --------------------------------------------------------------------------- #
# Counts
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda e: e.score(DB, Y, n_neighbors=True), "got True (bool is not"),
        (lambda e: e.score(DB, Y, n_neighbors=np.True_), "(bool is not accepted)"),
        (lambda e: e.kneighbors(DB, n_neighbors=True), "n_neighbors=True must be"),
        (lambda e: e.kneighbors(DB, n_neighbors=np.True_), "(bool is not accepted)"),
        (lambda e: e.set_params(alpha=True).kneighbors(DB), "got alpha=True."),
        (lambda e: e.set_params(n_neighbors=True).kneighbors(DB), "n_neighbors=True"),
        (lambda e: e.set_params(n_jobs=False).kneighbors(DB), "n_jobs=False"),
        (lambda e: e.set_params(alpha=np.True_).score(DB, Y), "'alpha' parameter"),
    ],
)
def test_bools_are_not_counts(call, message):
    with pytest.raises((ValueError, InvalidParameterError)) as info:
        call(_fitted())
    assert message in str(info.value)


def test_a_float_is_not_a_count():
    with pytest.raises(
        ValueError, match=r"n_neighbors must be a positive int; got 2\.0"
    ):
        _fitted().kneighbors(DB, n_neighbors=2.0)


def test_adding_zero_items_is_a_checked_no_op():
    est = _fitted()
    before = est.kneighbors(DB[:5])
    assert est.add(DB[:0], Y[:0]) is est and est.n_samples_fit_ == N
    for a, b in zip(est.kneighbors(DB[:5]), before):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="y must be given exactly"):
        est.add(DB[:0])
    with pytest.raises(ValueError, match="other codebooks"):
        est.add(_other_model(DB)[:0], Y[:0])
    plain = TwoStageRetriever(n_neighbors=2).fit(np.ones((4, 3)))
    assert plain.add(np.ones((0, 3))).n_samples_fit_ == 4
    with pytest.raises(ValueError, match="features"):
        plain.add(np.ones((0, 5)))


# --------------------------------------------------------------------------- #
# CodeSet
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "n_bits, bits_width, message",
    [
        (0, 1, "n_bits=0 must be >= 1"),
        (-8, 1, "n_bits=-8 must be >= 1"),
        (12.5, 2, "n_bits=12.5 must be a positive int"),
        (12.0, 2, "n_bits=12.0 must be a positive int"),
        (True, 1, "n_bits=True must be a positive int (bool is not accepted)"),
        ("12", 2, "n_bits='12' must be a positive int"),
        (12, 1, "have 1 bytes per item but n_bits=12 needs 2"),
        (2**40, 2, "n_bits=1099511627776 needs 137438953472"),
        (None, 0, "have 0 bytes per item"),
    ],
)
def test_codeset_n_bits_is_checked(n_bits, bits_width, message):
    with pytest.raises(ValueError) as info:
        CodeSet(bits=np.zeros((3, bits_width), np.uint8), n_bits=n_bits)
    assert message in str(info.value)
    assert "n_bits" in str(info.value) or "bytes" in str(info.value)


def test_codeset_is_read_only_and_leaves_the_callers_arrays_alone():
    emb = np.random.RandomState(0).randn(6, D).astype(np.float32)
    bits = pack_bits(emb[:, :N_BITS] if D >= N_BITS else np.tile(emb, 2)[:, :N_BITS])
    C = DB.codebooks.copy()
    cs = CodeSet(
        embedding=emb,
        bits=bits,
        codes=np.zeros((6, M), np.uint8),
        n_bits=N_BITS,
        codebooks=C,
        codebook_kind="additive",
    )
    views = [
        cs,
        cs[1:4],
        cs[[0, 2]],
        cs[np.arange(6) > 2],
        cs.without("codes"),
        CodeSet.from_modalities(img=cs, txt=cs)["txt"],
        pickle.loads(pickle.dumps(cs)),
    ]
    for v in views:
        for part in (v.embedding, v.bits, v.codebooks):
            assert not part.flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                part[0] = 0
        for name, value in [("n_bits", 8), ("codebooks", None), ("codebook_kind", "x")]:
            with pytest.raises(AttributeError, match="CodeSet is read-only"):
                setattr(v, name, value)
        with pytest.raises(AttributeError, match="CodeSet is read-only"):
            del v.n_bits
    assert emb.flags.writeable and bits.flags.writeable and C.flags.writeable
    C += 1  # the caller's codebooks: the CodeSet kept its own copy
    assert cs.fingerprint == DB.fingerprint
    with pytest.raises(ValueError, match="would leave modality 'X' with no part"):
        cs.without("embedding", "bits", "codes")


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda m: m.update(n_bits=m["n_bits"] + 1), id="n_bits"),
        pytest.param(lambda m: m["params"].update(n_neighbors=3), id="parameter"),
        pytest.param(lambda m: m.update(model_fingerprint="0" * 16), id="model"),
    ],
)
@pytest.mark.parametrize("layout", ["index", "index.npz"])
def test_metadata_edited_after_save_never_loads(edit, layout, tmp_path):
    """Edits that every field check accepts (a consistent n_bits of the same
    byte width, a valid parameter) are caught by the metadata's own seal."""
    path = _fitted().save(tmp_path / layout)
    if layout.endswith(".npz"):
        members = _npz_members(path)
        meta = json.loads(str(members["__meta__"]))
        edit(meta)
        members["__meta__"] = np.array(json.dumps(meta))
        np.savez(path, **members)
    else:
        meta = _meta(path)
        edit(meta)
        _write_meta(path, meta, reseal=False)
    for mmap_mode in (None, "r") if not layout.endswith(".npz") else (None,):
        with pytest.raises(IndexFormatError, match="changed after it was written"):
            TwoStageRetriever.load(path, mmap_mode=mmap_mode)
