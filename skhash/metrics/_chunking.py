"""Query chunks of the retrieval metrics, so that no temporary array grows
much beyond ``_CHUNK_ELEMENTS`` elements."""

# Authors: The skhash developers
# SPDX-License-Identifier: BSD-3-Clause

# Upper bound on the number of elements of a per-chunk temporary array.
_CHUNK_ELEMENTS = 2**22


def _chunks(n_rows, row_width):
    """Yield slices over ``n_rows`` rows, each of about ``_CHUNK_ELEMENTS``."""
    step = max(1, _CHUNK_ELEMENTS // max(1, int(row_width)))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))
