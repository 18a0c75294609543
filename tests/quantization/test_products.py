"""Ordered products behind the look-up tables: one summation order, so the
same bits from the compiled kernel and the numpy reference, for any batch."""

import numpy as np
import pytest

from skhash.quantization import lookup_tables
from skhash.quantization._products import WIDTH, ordered_products, tile_rows
from skhash.quantization._products_kernel import products_kernel


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
