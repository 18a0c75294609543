"""Tests of the compiled encoders (quantization._encode_kernels) behind encode().

The numpy reference (``_encode_numpy``, the former implementation) is the
oracle: the compiled greedy + ICM search must return its codes, and the torch
path (run here on the CPU, and on a GPU under the ``gpu`` marker) the same.
"""

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.utils._param_validation import InvalidParameterError

from skhash.quantization import _encode_kernels as E
from skhash.quantization import encode, kmeans_codebooks, quantization_error
from skhash.quantization._encode import _check_encode_args, _encode_numpy
from skhash.quantization._encode_torch import encode_torch


def _problem(n=300, d=12, M=3, K=16, seed=0, dtype=np.float32):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d).astype(dtype)
    C = (0.5 * rng.randn(M, K, d)).astype(np.float32)
    return X, C


def _torch_cpu(X, C, kind, n_iter=3, init_codes=None, blocks=None):
    X, C, init, out_dtype = _check_encode_args(X, C, kind, init_codes)
    return encode_torch(
        X,
        C,
        kind=kind,
        n_iter=n_iter,
        init_codes=init,
        out_dtype=out_dtype,
        device="cpu",
        blocks=blocks,
    )


# --------------------------------------------------------------------------- #
# Additive: same codes as the numpy reference
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_iter", [0, 1, 3, 10])
@pytest.mark.parametrize("warm", [False, True])
def test_additive_matches_numpy_reference(dtype, n_iter, warm):
    X, C = _problem(dtype=dtype, seed=n_iter)
    init = np.random.RandomState(1).randint(16, size=(len(X), 3)) if warm else None
    got = encode(X, C, kind="additive", n_iter=n_iter, init_codes=init)
    ref = _encode_numpy(X, C, kind="additive", n_iter=n_iter, init_codes=init)
    assert got.dtype == ref.dtype == np.uint8
    assert_array_equal(got, ref)


@pytest.mark.parametrize("M", [1, 2, 5])
def test_additive_any_number_of_codebooks(M):
    X, C = _problem(M=M, K=7, d=5)
    for init in (None, np.zeros((len(X), M), dtype=np.int64)):
        assert_array_equal(
            encode(X, C, kind="additive", init_codes=init),
            _encode_numpy(X, C, kind="additive", init_codes=init),
        )


def test_additive_direct_path_for_large_codebooks():
    # M² K² entries over the table budget: the residual kernel, uint16 codes
    X, C = _problem(n=120, d=6, M=2, K=3000)
    assert E.table_bytes(2, 3000) > E._TABLE_BYTES
    init = np.random.RandomState(2).randint(3000, size=(120, 2))
    for kwargs in ({}, {"init_codes": init}, {"n_iter": 0}):
        got = encode(X, C, kind="additive", **kwargs)
        assert got.dtype == np.uint16
        assert_array_equal(got, _encode_numpy(X, C, kind="additive", **kwargs))


def test_ties_pick_the_first_codeword_like_numpy():
    # duplicated codewords (k-means on data with few distinct points) tie
    # exactly; np.argmin's choice is the lowest index
    X, C = _problem(M=3, K=8, d=4)
    C[:, 4:] = C[:, :4]
    got = encode(X, C, kind="additive")
    assert_array_equal(got, _encode_numpy(X, C, kind="additive"))
    assert got.max() < 4


def test_icm_sweeps_never_increase_error():
    X, C = _problem(n=500, d=16, M=4, K=32, seed=3)
    errors = [
        quantization_error(X, encode(X, C, kind="additive", n_iter=it), C)
        for it in range(5)
    ]
    assert np.all(np.diff(errors) <= 1e-6 * errors[0]), errors
    assert errors[-1] < errors[0]


# --------------------------------------------------------------------------- #
# Items are independent: blocks, threads, calls
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("kind", ["additive", "product"])
def test_codes_do_not_depend_on_the_rest_of_the_call(kind):
    rng = np.random.RandomState(4)
    X = rng.randn(400, 8).astype(np.float32)
    C = kmeans_codebooks(X, 4, 16, kind=kind, random_state=0)
    full = encode(X, C, kind=kind)
    block = E._BLOCK
    for start, size in [(0, 1), (3, block - 1), (0, block), (5, block + 1), (399, 1)]:
        part = encode(X[start : start + size], C, kind=kind)
        assert_array_equal(part, full[start : start + size])
    assert_array_equal(encode(X, C, kind=kind, n_jobs=2), full)
    assert_array_equal(encode(X, C, kind=kind), full)


@pytest.mark.parametrize(
    "kind, K", [("additive", 16), ("additive", 3000), ("product", 16)]
)
def test_temporary_memory_does_not_grow_with_n(kind, K):
    import tracemalloc

    rng = np.random.RandomState(13)
    C = (0.5 * rng.randn(2, K, 4)).astype(np.float32)
    if kind == "product":
        C[0, :, 2:] = 0
        C[1, :, :2] = 0
    extra = []
    for n in (4000, 40000):
        X = rng.randn(n, 4).astype(np.float32)
        encode(X[:10], C, kind=kind)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        codes = encode(X, C, kind=kind)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        extra.append(peak - codes.nbytes)  # beyond the output itself
    # 10x the items: the temporaries stay within the same fixed budget
    assert extra[1] < 2 * extra[0] + 2**20, extra


def test_inputs_are_not_modified_and_read_only_inputs_work():
    X, C = _problem()
    init = np.random.RandomState(5).randint(16, size=(len(X), 3))
    copies = [a.copy() for a in (X, C, init)]
    for a in (X, C, init):
        a.flags.writeable = False
    encode(X, C, kind="additive", init_codes=init)
    encode(X, C, kind="additive", beam_width=3)
    for a, b in zip((X, C, init), copies):
        assert_array_equal(a, b)


# --------------------------------------------------------------------------- #
# Beam search
# --------------------------------------------------------------------------- #


def test_beam_search_lowers_the_error():
    X, C = _problem(n=600, d=16, M=4, K=16, seed=6)
    greedy = quantization_error(X, encode(X, C, kind="additive"), C)
    beams = [
        quantization_error(X, encode(X, C, kind="additive", beam_width=b), C)
        for b in (4, 16)
    ]
    assert beams[0] < greedy
    assert beams[1] <= beams[0] + 1e-9
    assert_array_equal(
        encode(X, C, kind="additive", beam_width=1), encode(X, C, kind="additive")
    )


def test_beam_search_zero_iterations_is_the_beam_itself():
    # with beam_width >= K**M every encoding is kept: the exact optimum
    X, C = _problem(n=50, d=3, M=2, K=4, seed=7)
    codes = encode(X, C, kind="additive", n_iter=0, beam_width=16)
    grid = np.stack(np.meshgrid(np.arange(4), np.arange(4), indexing="ij"), -1)
    grid = grid.reshape(-1, 2)
    rec = C[0][grid[:, 0]] + C[1][grid[:, 1]]
    best = ((X[:, None, :] - rec[None]) ** 2).sum(-1).argmin(1)
    err_opt = ((X - rec[best]) ** 2).sum(1)
    err = ((X - C[0][codes[:, 0]] - C[1][codes[:, 1]]) ** 2).sum(1)
    np.testing.assert_allclose(err, err_opt, rtol=1e-5, atol=1e-6)


def test_beam_needs_the_tables():
    X, C = _problem(n=20, d=4, M=2, K=3000)
    with pytest.raises(ValueError, match=r"beam_width=4 .*beam_width=1"):
        encode(X, C, kind="additive", beam_width=4)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_beam_width_is_validated(bad):
    X, C = _problem(n=10)
    with pytest.raises(InvalidParameterError, match="beam_width"):
        encode(X, C, kind="additive", beam_width=bad)


def test_local_search_never_worsens_an_item():
    X, C = _problem(n=400, d=16, M=4, K=16, seed=12)
    icm = encode(X, C, kind="additive")
    ils = encode(X, C, kind="additive", ils_iters=8)

    def per_item(codes):
        rec = sum(C[m][codes[:, m]] for m in range(4))
        return ((X - rec) ** 2).sum(1)

    assert np.all(per_item(ils) <= per_item(icm) + 1e-5)
    assert per_item(ils).mean() < per_item(icm).mean()
    # deterministic, and independent of the other items of the call
    assert_array_equal(encode(X, C, kind="additive", ils_iters=8), ils)
    assert_array_equal(encode(X[7:70], C, kind="additive", ils_iters=8), ils[7:70])
    both = encode(X, C, kind="additive", ils_iters=8, beam_width=4)
    assert per_item(both).mean() <= per_item(icm).mean()


def test_local_search_is_validated():
    X, C = _problem(n=10)
    with pytest.raises(InvalidParameterError, match="ils_iters"):
        encode(X, C, kind="additive", ils_iters=-1)
    X, C = _problem(n=10, d=4, M=2, K=3000)
    with pytest.raises(ValueError, match=r"ils_iters=2 .*ils_iters=0"):
        encode(X, C, kind="additive", ils_iters=2)
    with pytest.raises(ValueError, match="ils_iters=2 runs on the CPU only"):
        encode(X, C, kind="additive", ils_iters=2, device="cuda")


# --------------------------------------------------------------------------- #
# Product codes
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("d, M", [(10, 4), (7, 7), (64, 8)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_product_matches_numpy_reference(d, M, dtype):
    X = np.random.RandomState(d).randn(300, d).astype(dtype)
    C = kmeans_codebooks(X, M, 32, kind="product", random_state=0)
    assert_array_equal(
        encode(X, C, kind="product"), _encode_numpy(X, C, kind="product")
    )


# --------------------------------------------------------------------------- #
# The torch path (GPU code, checked on the CPU here)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("K, warm", [(16, False), (16, True), (3000, False)])
def test_torch_path_matches_compiled_codes(K, warm):
    X, C = _problem(n=200, d=8, M=3, K=K, seed=8)
    init = np.random.RandomState(9).randint(K, size=(200, 3)) if warm else None
    assert_array_equal(
        _torch_cpu(X, C, "additive", init_codes=init),
        encode(X, C, kind="additive", init_codes=init),
    )


def test_torch_path_product():
    from skhash.quantization import product_blocks

    X = np.random.RandomState(10).randn(200, 10)
    C = kmeans_codebooks(X, 4, 16, kind="product", random_state=0)
    got = _torch_cpu(X, C, "product", blocks=product_blocks(10, 4))
    assert_array_equal(got, encode(X, C, kind="product"))


def test_torch_path_chunks_are_sized_by_bytes_and_do_not_change_codes(monkeypatch):
    from skhash.quantization import _encode_torch

    # the default size follows the temporaries' byte budget, within bounds
    monkeypatch.setattr(_encode_torch, "_CHUNK", None)
    big = _encode_torch.chunk_items(8, 256, "cpu")
    assert big == _encode_torch._CHUNK_BYTES // (12 * 8 * 256)
    assert _encode_torch.chunk_items(64, 4096, "cpu") == 1024
    assert _encode_torch.chunk_items(1, 2, "cpu") == 1 << 20
    X, C = _problem(n=300, d=8, M=3, K=16, seed=12)
    whole = _torch_cpu(X, C, "additive")
    monkeypatch.setattr(_encode_torch, "_CHUNK", 7)  # 43 chunks, the last of 6
    assert_array_equal(_torch_cpu(X, C, "additive"), whole)
    assert_array_equal(whole, encode(X, C, kind="additive"))


def test_torch_path_takes_read_only_arrays_silently():
    import warnings

    X, C = _problem(n=50, d=8, M=3, K=16, seed=13)
    init = np.random.RandomState(2).randint(16, size=(50, 3))
    for a in (X, C, init):
        a.setflags(write=False)  # as a CodeSet's embeddings are
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's non-writable-array warning
        got = _torch_cpu(X, C, "additive", init_codes=init)
    assert_array_equal(got, encode(X, C, kind="additive", init_codes=init))
    assert not X.flags.writeable and not init.flags.writeable


def test_device_argument_is_checked():
    X, C = _problem(n=10)
    with pytest.raises(ValueError, match=r"device='tpu' .*'cuda'"):
        encode(X, C, kind="additive", device="tpu")
    assert_array_equal(
        encode(X, C, kind="additive", device="cpu"), encode(X, C, kind="additive")
    )


def test_learner_device_falls_back_to_cpu():
    from skhash.quantization._encode_torch import learner_device

    assert learner_device(None) is None
    assert learner_device("cpu") is None
    import torch

    expected = "cuda" if torch.cuda.is_available() else None
    assert learner_device("cuda") == expected


@pytest.mark.gpu
def test_gpu_encode_matches_cpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    X, C = _problem(n=5000, d=32, M=4, K=64, seed=11)
    for kind, CC in (
        ("additive", C),
        ("product", kmeans_codebooks(X, 4, 64, kind="product", random_state=0)),
    ):
        cpu = encode(X, CC, kind=kind)
        gpu = encode(X, CC, kind=kind, device="cuda")
        assert gpu.dtype == cpu.dtype
        # the GPU sums in another order: near-ties may flip, errors agree
        assert (gpu == cpu).all(axis=1).mean() > 0.99
        np.testing.assert_allclose(
            quantization_error(X, gpu, CC), quantization_error(X, cpu, CC), rtol=1e-4
        )
    with pytest.raises(ValueError, match="beam_width"):
        encode(X, C, kind="additive", device="cuda", beam_width=2)


def test_encode_n_jobs_zero_is_refused_clearly():
    rng = np.random.RandomState(0)
    X = rng.randn(40, 4)
    C = kmeans_codebooks(X, 2, 4, kind="additive", random_state=0)
    with pytest.raises(ValueError, match=r"n_jobs=0 .*pass n_jobs=1"):
        encode(X, C, kind="additive", n_jobs=0)
    np.testing.assert_array_equal(
        encode(X, C, kind="additive", n_jobs=-1), encode(X, C, kind="additive")
    )


@pytest.mark.parametrize("factor", [1e20, 1e30, 1e-20, 1e-30])
def test_codes_do_not_depend_on_the_magnitude_of_float32_data(factor):
    # float32 squared distances overflow past ~1e19 and vanish below ~1e-19:
    # such data is encoded in float64, so its codes are the unscaled ones
    from skhash.quantization import AdditiveQuantizer, ProductQuantizer

    rng = np.random.RandomState(0)
    X = rng.randn(300, 8).astype(np.float32)
    big = X * np.float32(factor)
    for kind in ("additive", "product"):
        C = kmeans_codebooks(X, 2, 8, kind=kind, random_state=0)
        ref = encode(X, C, kind=kind)
        assert_array_equal(encode(big, C * np.float32(factor), kind=kind), ref)
        err = quantization_error(big, ref, C * np.float32(factor))
        assert np.isclose(err, quantization_error(X, ref, C) * factor**2, rtol=1e-4)
    for cls in (AdditiveQuantizer, ProductQuantizer):
        ref = cls(2, 8, random_state=0).fit(X).transform(X)
        assert_array_equal(cls(2, 8, random_state=0).fit(big).transform(big), ref)


def test_codes_at_every_magnitude_without_warnings():
    # every decade from 1e-35 to 1e35: the same codes as the unscaled data,
    # and no overflow/underflow warning from the encoder's own tables (its
    # integer steps of ~|C|^2 / 32767 left float32 at 1e-18 before)
    import warnings

    rng = np.random.RandomState(0)
    X = rng.randn(200, 8).astype(np.float32)
    for kind in ("additive", "product"):
        C = kmeans_codebooks(X, 2, 8, kind=kind, random_state=0)
        ref = encode(X, C, kind=kind)
        for e in range(-35, 36):
            f = np.float32(10.0**e)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                got = encode(X * f, C * f, kind=kind)
            assert_array_equal(got, ref, err_msg=f"{kind} at 1e{e}")


@pytest.mark.parametrize("K", [64, 256])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_product_codes_from_tiles_match_the_reference(K, dtype):
    # K a multiple of 64: the products kernel per block of dimensions (blocks
    # of 7, 7 and 6 here, so the narrower one is padded), over several blocks
    # of items and two threads: the numpy reference's codes, and exact ties
    # (duplicated codewords) to the lower index
    from skhash.quantization import product_blocks

    rng = np.random.RandomState(K)
    d, M = 20, 3
    X = rng.randn(700, d).astype(dtype)
    C = np.zeros((M, K, d), dtype=np.float32)
    for m, b in enumerate(product_blocks(d, M)):
        C[m][:, b] = rng.randn(K, len(b))
    for n_jobs in (1, 2):
        got = encode(X, C, kind="product", n_jobs=n_jobs)
        assert_array_equal(got, _encode_numpy(X, C, kind="product"))
    C[:, K // 2 :] = C[:, : K // 2]
    got = encode(X, C, kind="product")
    assert got.max() < K // 2
    assert_array_equal(got, _encode_numpy(X, C, kind="product") % (K // 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_codebook_with_given_codes_is_the_nearest_codeword(dtype):
    # with one codebook no ICM step runs: given codes were returned as they
    # were, however far from the nearest codeword
    X, C = _problem(M=1, K=32, dtype=dtype)
    nearest = np.argmin(
        ((X[:, None, :].astype(np.float64) - C[0][None].astype(np.float64)) ** 2).sum(
            -1
        ),
        axis=1,
    )
    start = ((nearest + 1) % 32)[:, None]
    for fn in (encode, _encode_numpy):
        got = fn(X, C, kind="additive", init_codes=start)
        assert_array_equal(got[:, 0], nearest)
        assert_array_equal(got, fn(X, C, kind="additive"))


def test_more_codewords_than_uint16_holds_are_refused():
    # a code of 65536 or more would wrap in the uint16 codes
    X = np.zeros((2, 1), np.float32)
    C = np.zeros((1, 65537, 1), np.float32)
    for kind in ("additive", "product"):
        with pytest.raises(ValueError, match="at most 65,536 are supported"):
            encode(X, C, kind=kind)
    with pytest.raises(ValueError, match="each at least 1"):
        encode(X, np.zeros((1, 0, 1), np.float32), kind="additive")
