"""Ordered products behind the look-up tables: one summation order, so the
same bits from the compiled kernel and the numpy reference, for any batch."""

import numpy as np
import pytest
from llvmlite import binding
from numba import njit

from skhash.quantization import _products_kernel as PK
from skhash.quantization import lookup_tables
from skhash.quantization._products import WIDTH, ordered_products, tile_rows
from skhash.quantization._products_kernel import products_kernel
from skhash.utils._numba_stack import _WIDE, wide_vectors


def _sequential(A, B):
    """Each entry summed over the dimensions in order, by hand."""
    out = np.zeros((A.shape[0], B.shape[0]), dtype=A.dtype)
    for j in range(A.shape[1]):
        out += A[:, j, None] * B[None, :, j]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "n,d,k", [(1, 1, 1), (3, 5, 7), (9, 64, 2048), (17, 33, WIDTH + 1), (8, 16, 64)]
)
def test_kernel_and_reference_are_the_same_bits(dtype, n, d, k):
    rng = np.random.RandomState(n * 100 + k)
    # mixed scales, so that a different order would round differently
    A = (rng.randn(n, d) * 10.0 ** rng.randint(-3, 4, (1, d))).astype(dtype)
    B = rng.randn(k, d).astype(dtype)
    tiles = tile_rows(B, dtype)
    ref = ordered_products(A, tiles, k, compiled=False)
    full = np.empty((n, tiles.shape[0] * WIDTH), dtype=dtype)
    products_kernel(A, tiles, full)
    np.testing.assert_array_equal(full[:, :k], ref)
    np.testing.assert_array_equal(ref, _sequential(A, B))
    assert ref.dtype == dtype and ref.shape == (n, k)


def test_a_row_is_the_same_bits_in_any_batch():
    rng = np.random.RandomState(0)
    A = rng.randn(50, 64).astype(np.float32)
    C = rng.randn(8, 256, 64).astype(np.float32)
    whole = lookup_tables(A, C, metric="ip")
    for start, stop in ((0, 1), (3, 4), (7, 30), (49, 50), (0, 13)):
        np.testing.assert_array_equal(
            lookup_tables(A[start:stop], C, metric="ip"), whole[start:stop]
        )


def test_empty_and_dtype_mismatch():
    tiles = tile_rows(np.ones((3, 4)), np.float32)
    assert ordered_products(np.ones((0, 4), np.float32), tiles, 3).shape == (0, 3)
    with pytest.raises(TypeError, match="float64"):
        ordered_products(np.ones((2, 4)), tiles, 3)


def _host_has_avx512():
    binding.initialize_native_target()
    return "+avx512f" in binding.get_host_cpu_features().flatten().split(",")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wide_products_kernel_same_bits_and_wide_vectors(dtype):
    # the encoder's products: the same bits as the search's kernel and the
    # numpy reference; their own LLVM functions carry the 512-bit preference
    # (LLVM picks 256-bit vectors on Intel cores with AVX-512 otherwise), and
    # with AVX-512 their loops use it; the search's kernel keeps the default
    rng = np.random.RandomState(3)
    A = (rng.randn(13, 33) * 10.0 ** rng.randint(-3, 4, (1, 33))).astype(dtype)
    tiles = tile_rows(rng.randn(3 * WIDTH, 33), dtype)
    out, ref = (np.empty((13, 3 * WIDTH), dtype) for _ in range(2))
    PK.wide_products_kernel(A, tiles, out)
    products_kernel(A, tiles, ref)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(
        out, ordered_products(A, tiles, 3 * WIDTH, compiled=False)
    )
    plain = PK._products4 if dtype == np.float32 else PK._products2
    for kernel, marked in (
        (PK.wide_products_kernel, True),
        (plain, False),
        (products_kernel, False),
    ):
        # compiled afresh: a kernel loaded from numba's cache has no IR
        fresh = njit(nogil=True, boundscheck=False)(kernel.py_func)
        fresh(A, tiles, out)
        assert (_WIDE in fresh.inspect_llvm(fresh.signatures[0])) == marked
        if _host_has_avx512() and marked:
            assert "zmm" in fresh.inspect_asm(fresh.signatures[0])


def test_wide_vectors_marks_only_its_kernel():
    # a kernel without the call keeps the target's default
    @njit
    def marked(x):
        wide_vectors()
        return x + 1

    @njit
    def plain(x):
        return x + 1

    assert marked(1) == plain(1) == 2
    assert _WIDE in marked.inspect_llvm(marked.signatures[0])
    assert _WIDE not in plain.inspect_llvm(plain.signatures[0])
