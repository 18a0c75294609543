"""What a valid saved TwoStageRetriever index is: format, schema, checks.

The format version and the metadata fields, the arrays an index holds and
their dtypes and shapes, the content checks run on every load (nothing
unchecked reaches a search kernel), the sha256 checksums, and the labels an
index can store exactly. :mod:`skhash.retrieval._storage` reads and writes
the files and calls these checks.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from sklearn.utils import check_array

from skhash._codes import _n_bytes, codebook_fingerprint
from skhash.exceptions import IndexFormatError
from skhash.metrics._ranking import _as_label_array

FORMAT = "skhash.TwoStageRetriever"
FORMAT_VERSION = 2
_READABLE = (1, 2)
MANIFEST = "meta.json"
_PARTS = ("bits", "codes", "sqnorms", "embedding")
_RERANKS = ("aqd", "aqd-l2", "hamming-codes", "exact", "none")
_NEEDS_CODES = ("aqd", "aqd-l2", "hamming-codes")
_SCAN_BYTES = 16 * 2**20  # rows read at a time by the content checks
_LABEL_KINDS = "biufUS"


def expected_parts(has_bits, has_codes, rerank, kind):
    """The parts an index entry holds, as ``_index_entry`` makes them."""
    parts = set()
    if has_bits:
        parts.add("bits")
    if has_codes:
        parts.add("codes")
        if rerank == "aqd-l2" and kind == "additive":
            parts.add("sqnorms")
    if rerank == "exact" or not (has_bits or has_codes):
        parts.add("embedding")
    return parts


def digest(a, start=0, stop=None):
    """sha256 of the bytes of rows ``start:stop`` of ``a``, read in chunks."""
    stop = a.shape[0] if stop is None else stop
    h = hashlib.sha256()
    row = max(1, a[:1].nbytes)
    step = max(1, _SCAN_BYTES // row)
    for i in range(start, stop, step):
        h.update(np.ascontiguousarray(a[i : min(i + step, stop)]).data)
    return h.hexdigest()


def array_schema(arrays):
    return {
        name: {
            "dtype": a.dtype.str,
            "shape": list(a.shape),
            "sha256": [[int(a.shape[0]), digest(a)]],
        }
        for name, a in arrays.items()
    }


def check_savable(arrays):
    for name, a in arrays.items():
        if a.dtype.hasobject:
            what = "database labels y_" if name == "y" else f"array {name!r}"
            raise ValueError(
                f"The {what} have dtype object, which cannot be saved without "
                "pickle; fit with numeric or string labels."
            )


def array_names(meta, path):
    names = [f"{m}.{p}" for m in meta["modalities"] for p in meta["parts"][m]]
    if meta["has_y"]:
        names.append("y")
    if meta["codebook_kind"] is not None:
        names.append("codebooks")
    return names


def bad(where, what):
    return IndexFormatError(f"{where}: {what}; the index is damaged or not from save.")


def is_int(v, low=1):
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


SEAL = "meta_sha256"


def _meta_digest(meta):
    body = {k: v for k, v in meta.items() if k != SEAL}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def seal(meta):
    """``meta`` with a checksum of its own content (key ``meta_sha256``)."""
    return {**{k: v for k, v in meta.items() if k != SEAL}, SEAL: _meta_digest(meta)}


def check_seal(meta, where):
    """Refuse metadata edited after it was written (files of skhash <= 0.1
    carry no seal and are not checked).

    Run after every other check, so that a damaged field is reported as
    such; this catches the edits that are consistent with the arrays (a
    changed ``n_bits`` of the same byte width, a changed parameter...).
    """
    stored = meta.get(SEAL)
    if stored is None:
        return
    if not isinstance(stored, str) or stored != _meta_digest(meta):
        raise bad(
            where,
            "the metadata was changed after it was written: its checksum "
            f"({SEAL}) does not match its content. Restore the file, or save "
            "the index again from the estimator",
        )


def check_meta(meta, where):
    """Check the metadata's format, version and every field's type."""
    version = meta.get("version")
    if version not in _READABLE:
        if is_int(version) and version > FORMAT_VERSION:
            raise IndexFormatError(
                f"{where}: format version {version} was written by a newer skhash; "
                f"this one reads versions {list(_READABLE)}. Upgrade skhash."
            )
        raise bad(where, f"unknown format version {version!r}")
    required = (
        "params",
        "rerank_fit",
        "n_samples_fit",
        "has_y",
        "modalities",
        "parts",
        "n_bits",
        "codebook_kind",
        "n_features_in",
    )
    missing = [k for k in required if k not in meta]
    if missing:
        raise bad(where, f"the metadata lacks {missing}")
    if not isinstance(meta["params"], dict):
        raise bad(where, "'params' is not an object")
    if meta["rerank_fit"] not in _RERANKS:
        raise bad(where, f"rerank_fit={meta['rerank_fit']!r} is not one of {_RERANKS}")
    if not is_int(meta["n_samples_fit"]):
        raise bad(where, f"n_samples_fit={meta['n_samples_fit']!r} is not an int >= 1")
    if not isinstance(meta["has_y"], bool):
        raise bad(where, f"has_y={meta['has_y']!r} is not a bool")
    mods = meta["modalities"]
    if (
        not isinstance(mods, list)
        or not mods
        or not all(isinstance(m, str) and m for m in mods)
        or len(set(mods)) != len(mods)
    ):
        raise bad(where, f"modalities={mods!r} is not a list of distinct names")
    parts = meta["parts"]
    if not isinstance(parts, dict) or set(parts) != set(mods):
        raise bad(where, f"parts={parts!r} does not give the parts of {mods}")
    kind = meta["codebook_kind"]
    if kind not in (None, "additive", "product"):
        raise bad(where, f"codebook_kind={kind!r} is not None, 'additive' or 'product'")
    any_bits = False
    for m in mods:
        p = parts[m]
        if (
            not isinstance(p, list)
            or not set(p) <= set(_PARTS)
            or len(set(p)) != len(p)
        ):
            raise bad(where, f"the parts of {m!r}, {p!r}, are not among {_PARTS}")
        has_bits, has_codes = "bits" in p, "codes" in p
        any_bits |= has_bits
        if has_codes and kind is None:
            raise bad(where, f"modality {m!r} stores codes but there are no codebooks")
        want = expected_parts(has_bits, has_codes, meta["rerank_fit"], kind)
        if set(p) != want:
            raise bad(
                where,
                f"modality {m!r} stores {sorted(p)} but rerank="
                f"{meta['rerank_fit']!r} needs {sorted(want)}",
            )
    n_bits = meta["n_bits"]
    if any_bits and not is_int(n_bits):
        raise bad(where, f"n_bits={n_bits!r} is not an int >= 1")
    if not any_bits and n_bits is not None:
        raise bad(where, f"n_bits={n_bits!r} but no modality stores bits")
    nf = meta["n_features_in"]
    if nf is not None and not is_int(nf):
        raise bad(where, f"n_features_in={nf!r} is not an int >= 1")
    fp = meta.get("codebooks_fingerprint")
    if fp is not None and not isinstance(fp, str):
        raise bad(where, f"codebooks_fingerprint={fp!r} is not a string")
    model = meta.get("model_fingerprint")  # absent in files of skhash <= 0.1
    if model is not None and (not isinstance(model, str) or not model):
        raise bad(where, f"model_fingerprint={model!r} is not a non-empty string")
    return meta


def row_chunks(a, step_bytes=_SCAN_BYTES):
    """Slices over the rows of ``a``, about ``step_bytes`` each."""
    row = max(1, a[:1].nbytes)
    step = max(1, step_bytes // row)
    for i in range(0, a.shape[0], step):
        yield slice(i, min(i + step, a.shape[0]))


def check_arrays(meta, arrays, where):
    """Check every array against the metadata (shapes, dtypes, contents)."""
    n = meta["n_samples_fit"]
    schema = meta.get("arrays") if isinstance(meta.get("arrays"), dict) else {}
    M = K = d = None
    if "codebooks" in arrays:
        C = arrays["codebooks"]
        w = where["codebooks"]
        if C.dtype != np.float32 or C.ndim != 3 or 0 in C.shape:
            raise bad(
                w,
                f"codebooks have dtype {C.dtype} and shape {C.shape}, not float32 "
                "(M, K, d)",
            )
        if not np.isfinite(C).all():
            raise bad(w, "the codebooks contain NaN or inf")
        M, K, d = C.shape
        fp = meta.get("codebooks_fingerprint")
        if fp is not None and codebook_fingerprint(C, meta["codebook_kind"]) != fp:
            raise bad(w, "the codebooks do not match the fingerprint in the metadata")
    nf = meta["n_features_in"]
    for name, a in arrays.items():
        w = where[name]
        if name == "codebooks":
            shape_ok = True
        elif name == "y":
            if a.ndim not in (1, 2) or a.shape[0] != n:
                raise bad(
                    w, f"labels of shape {a.shape}, not ({n},) or ({n}, n_labels)"
                )
            if a.dtype.kind not in _LABEL_KINDS:
                raise bad(w, f"labels of dtype {a.dtype}")
            if a.dtype.kind == "f":
                for sl in row_chunks(a):
                    if not np.isfinite(a[sl]).all():
                        raise bad(w, "the labels contain NaN or inf")
            shape_ok = True
        else:
            m, part = name.rsplit(".", 1)
            if a.shape[:1] != (n,):
                raise bad(
                    w, f"{a.shape[0] if a.ndim else 0} rows, but n_samples_fit={n}"
                )
            _check_part(part, a, w, meta, M, K, d, nf if m == "X" else None)
            shape_ok = True
        entry = schema.get(name)
        if shape_ok and isinstance(entry, dict) and "dtype" in entry:
            want_shape = (
                [n, *list(a.shape[1:])] if name != "codebooks" else list(a.shape)
            )
            if entry.get("dtype") != a.dtype.str or entry.get("shape") != want_shape:
                raise bad(
                    w,
                    f"holds dtype {a.dtype.str} and shape {want_shape} but the "
                    f"metadata says {entry.get('dtype')} and {entry.get('shape')}",
                )


def _check_part(part, a, w, meta, M, K, d, nf):
    if part == "bits":
        width = _n_bytes(meta["n_bits"])
        if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] != width:
            raise bad(
                w,
                f"bits have dtype {a.dtype} and shape {a.shape}, not uint8 with "
                f"ceil(n_bits / 8) = {width} bytes per item (n_bits={meta['n_bits']})",
            )
        pad = (-meta["n_bits"]) % 8
        if pad:
            junk = np.uint8(~((0xFF << pad) & 0xFF) & 0xFF)
            for sl in row_chunks(a):
                if np.any(a[sl, -1] & junk):
                    raise bad(w, f"bits beyond n_bits={meta['n_bits']} are set")
    elif part == "codes":
        dtype = np.uint8 if K <= 256 else np.uint16
        if a.dtype != dtype or a.ndim != 2 or a.shape[1] != M:
            raise bad(
                w,
                f"codes have dtype {a.dtype} and shape {a.shape}, not "
                f"{np.dtype(dtype)} with M = {M} codes per item",
            )
        for sl in row_chunks(a):
            top = int(a[sl].max()) if a[sl].size else 0
            if top >= K:
                raise bad(w, f"a code is {top}, out of range for K = {K} codewords")
    elif part == "sqnorms":
        if a.dtype != np.float32 or a.ndim != 1:
            raise bad(w, f"sqnorms have dtype {a.dtype} and shape {a.shape}")
        for sl in row_chunks(a):
            if not np.isfinite(a[sl]).all():
                raise bad(w, "the sqnorms contain NaN or inf")
    else:  # embedding
        if a.dtype != np.float32 or a.ndim != 2 or a.shape[1] == 0:
            raise bad(w, f"embeddings have dtype {a.dtype} and shape {a.shape}")
        if nf is not None and a.shape[1] != nf:
            raise bad(w, f"{a.shape[1]} features, but n_features_in={nf}")
        for sl in row_chunks(a):
            if not np.isfinite(a[sl]).all():
                raise bad(w, "the embeddings contain NaN or inf")


def verify_checksums(meta, arrays, where):
    schema = meta.get("arrays")
    for name, a in arrays.items():
        entry = schema.get(name) if isinstance(schema, dict) else None
        segments = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(segments, list) or not segments:
            raise IndexFormatError(
                f"{where[name]}: no checksum in the metadata (written by an older "
                "skhash); save the index again to verify it."
            )
        start = 0
        for seg in segments:
            if (
                not isinstance(seg, list)
                or len(seg) != 2
                or not is_int(seg[0], 0)
                or not isinstance(seg[1], str)
            ):
                raise bad(where[name], f"checksum entry {seg!r} is malformed")
            stop = start + seg[0]
            if stop > a.shape[0] or digest(a, start, stop) != seg[1]:
                raise IndexFormatError(
                    f"{where[name]}: the content of rows {start}:{stop} does not "
                    "match its checksum; the file was changed or damaged."
                )
            start = stop
        if start != a.shape[0]:
            raise IndexFormatError(
                f"{where[name]}: the checksums cover {start} rows of {a.shape[0]}."
            )


# labels


def check_y(y, ensure_min_samples=1):
    """Labels of indexed items: one type, no NaN, a storable dtype."""
    given = y
    y = _as_label_array(y, "y")
    y = check_array(
        y,
        ensure_2d=False,
        dtype=None,
        input_name="y",
        ensure_min_samples=ensure_min_samples,
    )
    if isinstance(given, np.ndarray) and np.may_share_memory(y, given):
        y = y.copy()  # the index's own labels, not a view of the caller's
    return y


def exact_in(values, dtype):
    """Whether every value of ``values`` is stored exactly as ``dtype``.

    Compared by value (ranges as Python numbers), never through a cast that
    wraps around (-1 is not 2**64 - 1).
    """
    dtype = np.dtype(dtype)
    if values.size == 0:
        return True
    kind = values.dtype.kind
    if dtype.kind == "b":
        return kind == "b" or bool(np.all((values == 0) | (values == 1)))
    if dtype.kind in "iu":
        if kind == "f" and not np.all(np.mod(values, 1) == 0):
            return False
        info = np.iinfo(dtype)
        return info.min <= values.min().item() and values.max().item() <= info.max
    with np.errstate(invalid="ignore", over="ignore"):
        back = values.astype(dtype).astype(values.dtype)
    return bool(np.array_equal(back, values))


def merged_label_dtype(old, new):
    """The label dtype holding the indexed labels ``old`` and ``new`` exactly.

    The indexed dtype when it holds ``new`` exactly; else a wider one of the
    same family (longer strings, a wider int, float64) that holds both;
    else a ValueError. Never a cast that changes a value: an int index stays
    int (whole-number floats are accepted, 2.7 raises), and strings never
    mix with numbers.
    """
    ko, kn = old.dtype.kind, new.dtype.kind
    if new.size == 0:  # no value to store (np.array([]) is float64)
        return old.dtype
    if ko in "US" or kn in "US":
        if ko != kn:
            what = {"U": "strings", "S": "bytes"}
            raise ValueError(
                f"y holds {what.get(kn, 'numbers')} (dtype {new.dtype}) but the "
                f"index labels are {what.get(ko, 'numbers')} (dtype {old.dtype}); "
                "add labels of the same type as at fit."
            )
        if new.dtype.itemsize <= old.dtype.itemsize:
            return old.dtype
        return np.dtype(f"{kn}{new.dtype.itemsize // (4 if kn == 'U' else 1)}")
    if exact_in(new, old.dtype):
        return old.dtype
    if ko in "biu":
        if kn == "f" and not np.all(np.mod(new, 1) == 0):
            bad = new[np.mod(new, 1) != 0].ravel()[0].item()
            raise ValueError(
                f"y holds {bad!r}, which is not a whole number, but the index "
                f"labels are integers (dtype {old.dtype}); add integer class "
                "ids (an int index never stores a float with a loss)."
            )
        candidates = [np.result_type(old.dtype, new.dtype), np.int64, np.uint64]
        candidates = [np.dtype(c) for c in candidates if np.dtype(c).kind in "iu"]
    else:  # float index
        candidates = [np.result_type(old.dtype, new.dtype), np.float64]
        candidates = [np.dtype(c) for c in candidates if np.dtype(c).kind == "f"]
    for dtype in candidates:
        if exact_in(new, dtype) and exact_in(np.asarray(old), dtype):
            return dtype
    raise ValueError(
        f"y (dtype {new.dtype}, values in [{new.min().item()!r}, "
        f"{new.max().item()!r}]) cannot be stored exactly with the index labels "
        f"(dtype {old.dtype}); add labels of the indexed type."
    )
