"""Storage of a TwoStageRetriever index: save, load and growth on disk.

Every rule about index files lives in this module and in
:mod:`skhash.retrieval._schema` (what a valid index is: the format, the
schema, the content checks and the checksums): here, the layouts, the
reads, and the transactional writes.

Two layouts:

- **``.npz``**: a zip of ``.npy`` members plus ``__meta__``, a JSON string.
  It is written to a temporary file beside the target, flushed to disk and
  renamed over it (:func:`os.replace`), so the path holds the old file or the
  new one, never a part of either.
- **a directory**: one ``.npy`` file per array and ``meta.json``, the
  *manifest*: the file, dtype, shape and checksums of every array. The
  manifest is the single source of truth and the commit point. A write only
  creates files the current manifest does not name (a new generation,
  ``<array>.g<n>.npy``) or appends rows past the end it declares; it flushes
  them, then replaces the manifest atomically, then deletes the files the old
  manifest named and the new one does not. A writer killed before the switch
  leaves the old manifest, which reads exactly the old rows; killed after
  it, the new one. Rows past the declared end (left by a killed ``add``) are
  ignored by ``load`` and cut by the next ``add``.

Tests inject faults through :func:`_checkpoint`, called before every step
that changes a file.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import zipfile
from numbers import Integral

import numpy as np

from skhash.exceptions import IndexFormatError
from skhash.retrieval import _ivf, _schema

MANIFEST = _schema.MANIFEST


def _checkpoint(step):
    """Called before every step that changes a file (a seam for tests)."""


# --------------------------------------------------------------------------- #
# What is stored
# --------------------------------------------------------------------------- #


def index_arrays(est):
    """The arrays of a fitted retriever, by name (``"<modality>.<part>"``,
    ``"codebooks"``, ``"y"``)."""
    arrays = {f"{m}.{p}": a for m, e in est._index.items() for p, a in e.items()}
    if est.y_ is not None:
        arrays["y"] = est.y_
    if est.codebooks_ is not None:
        arrays["codebooks"] = est.codebooks_
    return arrays


def _jsonable(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    return value


def base_meta(est, n_samples=None):
    """The metadata of ``est`` (with ``n_samples`` items, default its own)."""
    params = {k: _jsonable(v) for k, v in est.get_params().items()}
    if "random_state" in params and not isinstance(params["random_state"], int):
        params["random_state"] = None  # a RandomState: the seed drawn is in "ivf"
    meta = {
        "format": _schema.FORMAT,
        "version": _schema.FORMAT_VERSION,
        "params": params,
        "rerank_fit": est._fit_rerank,
        "n_samples_fit": int(est.n_samples_fit_ if n_samples is None else n_samples),
        "has_y": est.y_ is not None,
        "modalities": list(est.modalities_),
        "parts": {m: sorted(e) for m, e in est._index.items()},
        "n_bits": est.n_bits_,
        "codebook_kind": est.codebook_kind_,
        "codebooks_fingerprint": est.codebooks_fingerprint_,
        "model_fingerprint": getattr(est, "model_fingerprint_", None),
        "n_features_in": getattr(est, "n_features_in_", None),
    }
    ivf = _ivf.saved_state(est)
    if ivf is not None:  # how the inverted lists were built (stage1="ivf")
        meta["ivf"] = ivf
    return meta


# --------------------------------------------------------------------------- #
# Low-level file steps
# --------------------------------------------------------------------------- #


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _replace_atomically(path, tmp, f, write, step):
    """Write the temporary file ``tmp`` (opened as ``f``) with ``write(f)``,
    flush it to disk, and rename it over ``path``: ``path`` holds the old
    file or the new one, never a part of either. ``tmp`` is removed on any
    error."""
    try:
        with f:
            _checkpoint(step)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _checkpoint(f"switch {os.path.basename(path)}")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def _write_json_atomic(path, obj):
    """Write ``obj`` (sealed) to ``path`` through a temporary file + rename."""
    tmp = path + ".tmp"
    _replace_atomically(
        path,
        tmp,
        open(tmp, "w", encoding="utf-8"),
        lambda f: json.dump(_schema.seal(obj), f),
        f"write {os.path.basename(tmp)}",
    )


def _write_npy(path, a):
    _checkpoint(f"write {os.path.basename(path)}")
    with open(path, "wb") as f:
        np.lib.format.write_array(f, np.asarray(a), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _header_bytes(version, shape, dtype):
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": tuple(int(s) for s in shape),
    }
    buf = io.BytesIO()
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buf, header)
    else:
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()


def _read_header(path):
    """(version, shape, dtype, data offset) of the ``.npy`` file ``path``."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            offset = f.tell()
    except FileNotFoundError:
        raise IndexFormatError(f"{path}: the file is missing.") from None
    except (ValueError, OSError, SyntaxError, EOFError) as exc:
        raise IndexFormatError(
            f"{path}: not a readable .npy file ({exc}); the index is damaged."
        ) from None
    if fortran:
        raise IndexFormatError(
            f"{path}: holds a Fortran-ordered array; not saved here."
        )
    return version, tuple(shape), dtype, offset


# --------------------------------------------------------------------------- #
# save
# --------------------------------------------------------------------------- #


def save(est, path):
    """Write the fitted ``est`` to ``path`` (a ``.npz`` file or a directory)."""
    arrays = index_arrays(est)
    _schema.check_savable(arrays)
    meta = base_meta(est)
    meta["arrays"] = _schema.array_schema(arrays)
    path = os.fspath(path)
    if path.endswith(".npz"):
        _save_npz(path, arrays, meta)
    else:
        _save_dir(est, path, arrays, meta)
    return path


def _save_npz(path, arrays, meta):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"[Errno 2] No such file or directory: {folder!r}; create it before "
            f"saving {os.path.basename(path)!r} there."
        )
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    meta_text = np.array(json.dumps(_schema.seal(meta)))
    _replace_atomically(
        path,
        tmp,
        os.fdopen(fd, "wb"),
        lambda f: np.savez(f, __meta__=meta_text, **arrays),
        f"write {os.path.basename(path)} (temporary)",
    )


def _old_manifest(path):
    """The manifest of the index already in ``path`` (None if there is none
    or it cannot be read); refuses a ``meta.json`` of something else."""
    meta_path = os.path.join(path, MANIFEST)
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != _schema.FORMAT:
        raise FileExistsError(
            f"{meta_path} exists and was not written by TwoStageRetriever.save; "
            "save the index to another directory (or remove that file)."
        )
    try:
        return _manifest_files(meta, path)
    except IndexFormatError:
        return None


def _manifest_files(meta, path):
    """``meta`` with its per-array ``file`` and ``generation`` filled in
    (version-1 directories name the files ``<array>.npy``)."""
    meta = dict(meta)
    arrays = meta.get("arrays")
    if not isinstance(arrays, dict):
        arrays = {name: {} for name in _schema.array_names(meta, path)}
    meta["arrays"] = {}
    for name, entry in arrays.items():
        if not isinstance(entry, dict):
            raise IndexFormatError(
                f"{os.path.join(path, MANIFEST)}: the entry of array {name!r} is "
                "not an object."
            )
        entry = dict(entry)
        fname = entry.setdefault("file", f"{name}.npy")
        if (
            not isinstance(fname, str)
            or os.path.basename(fname) != fname
            or fname in ("", ".", "..")
            or not fname.endswith(".npy")
        ):
            raise IndexFormatError(
                f"{os.path.join(path, MANIFEST)}: array {name!r} names the file "
                f"{fname!r}, which is not a .npy file of this directory."
            )
        meta["arrays"][name] = entry
    gen = meta.setdefault("generation", 1)
    if isinstance(gen, bool) or not isinstance(gen, int) or gen < 1:
        raise IndexFormatError(
            f"{os.path.join(path, MANIFEST)}: generation={gen!r} is not a positive int."
        )
    return meta


def _save_dir(est, path, arrays, meta):
    os.makedirs(path, exist_ok=True)
    old = _old_manifest(path)
    old_files = set() if old is None else {e["file"] for e in old["arrays"].values()}
    gen = 1 if old is None else old["generation"] + 1
    names = {n: f"{n}.npy" if gen == 1 else f"{n}.g{gen}.npy" for n in arrays}
    if set(names.values()) & old_files:  # never overwrite what the old one reads
        raise IndexFormatError(
            f"{os.path.join(path, MANIFEST)}: names the files of generation {gen} "
            "for an older one; save to another directory."
        )
    written = []
    try:
        for name, a in arrays.items():
            meta["arrays"][name]["file"] = names[name]
            written.append(names[name])
            _write_npy(os.path.join(path, names[name]), a)
        meta["generation"] = gen
        _write_json_atomic(os.path.join(path, MANIFEST), meta)
    except BaseException:
        _remove(path, written)  # not switched in: the old index is whole
        raise
    new_files = {e["file"] for e in meta["arrays"].values()}
    _remove(path, old_files - new_files)
    store = getattr(est, "_store", None)
    if store is not None and _same_dir(store.path, path):
        # the estimator maps the files just replaced: map the new ones
        reopen(est, DiskStore(store.path, store.mode, meta))


def _remove(path, names):
    """Delete files the new manifest does not name (after the switch: a
    failure here loses nothing, the files are only left behind)."""
    for name in sorted(names):
        try:
            _checkpoint(f"remove {name}")
            os.remove(os.path.join(path, name))
        except OSError:
            pass


def _same_dir(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# --------------------------------------------------------------------------- #
# load
# --------------------------------------------------------------------------- #


class DiskStore:
    """Where a memory-mapped index lives: its directory, mode and manifest."""

    def __init__(self, path, mode, manifest):
        self.path = path
        self.mode = mode
        self.manifest = manifest


def where_meta(path):
    """How error messages name the metadata of the index at ``path``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return os.path.join(path, MANIFEST)
    return f"{path} (__meta__)"


def _foreign(path, why):
    return IndexFormatError(
        f"{path!r} was not written by TwoStageRetriever.save ({why}); pass a "
        "file or directory that save wrote."
    )


def read(path, mmap_mode=None, verify=False):
    """Read and check the index at ``path``.

    Returns ``(meta, arrays, store)``: the checked metadata, the checked
    arrays by name, and the :class:`DiskStore` of a memory-mapped directory
    (else None).
    """
    path = os.fspath(path)
    if mmap_mode not in (None, "r", "r+", "c"):
        raise ValueError(
            f"mmap_mode must be None, 'r', 'r+' or 'c'; got {mmap_mode!r}."
        )
    if not isinstance(verify, (bool, np.bool_)):
        raise ValueError(f"verify must be True or False; got {verify!r}.")
    if os.path.isdir(path):
        return _read_dir(path, mmap_mode, bool(verify))
    if not os.path.exists(path):
        raise FileNotFoundError(f"[Errno 2] No such file or directory: {path!r}")
    return _read_npz(path, bool(verify))


def _read_npz(path, verify):
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise _foreign(
                path,
                "neither a .npz nor a .npy file: numpy would have to unpickle it, "
                "which load never does",
            ) from None
        raise _foreign(path, f"not a .npz file: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _foreign(path, f"not a .npz file, or a truncated one: {exc}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise _foreign(path, "a single .npy array, not a .npz file")
    with loaded as f:
        if "__meta__" not in f.files:
            raise _foreign(path, "no '__meta__' entry")
        stored = {}
        for name in f.files:
            try:
                stored[name] = f[name]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise IndexFormatError(
                    f"{path}: member {name!r} cannot be read ({exc}); the file is "
                    "truncated or damaged."
                ) from None
    raw = stored.pop("__meta__")
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise _foreign(path, "'__meta__' is not a JSON string")
    meta = _parse_meta(str(raw), path, f"{path} (__meta__)")
    meta = _schema.check_meta(meta, f"{path} (__meta__)")
    names = _schema.array_names(meta, path)
    extra = set(stored) - set(names)
    if extra:
        raise IndexFormatError(
            f"{path}: holds arrays {sorted(extra)} that its metadata does not list."
        )
    arrays = {}
    for name in names:
        where = f"{path} (array {name!r})"
        if name not in stored:
            raise IndexFormatError(f"{where}: the array is missing.")
        arrays[name] = stored[name]
    _schema.check_arrays(meta, arrays, {n: f"{path} (array {n!r})" for n in names})
    if verify:
        _schema.verify_checksums(
            meta, arrays, {n: f"{path} (array {n!r})" for n in names}
        )
    _schema.check_seal(meta, f"{path} (__meta__)")
    return meta, arrays, None


def _parse_meta(text, path, where):
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise IndexFormatError(
            f"{where}: not valid JSON ({exc}); the index metadata is damaged."
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != _schema.FORMAT:
        raise _foreign(path, f"{where} is not TwoStageRetriever metadata")
    return meta


def _read_dir(path, mmap_mode, verify):
    meta_path = os.path.join(path, MANIFEST)
    if not os.path.isfile(meta_path):
        raise _foreign(path, f"no {MANIFEST}")
    try:
        with open(meta_path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"{meta_path}: cannot be read ({exc}).") from None
    raw_meta = _parse_meta(text, path, meta_path)
    meta = _schema.check_meta(raw_meta, meta_path)
    meta = _manifest_files(meta, path)
    names = _schema.array_names(meta, path)
    if set(meta["arrays"]) != set(names):
        raise IndexFormatError(
            f"{meta_path}: lists the arrays {sorted(meta['arrays'])} but the index "
            f"needs {sorted(names)}."
        )
    where = {n: os.path.join(path, meta["arrays"][n]["file"]) for n in names}
    n = meta["n_samples_fit"]
    arrays = {
        name: _open_npy(where[name], n, mmap_mode)
        if name != "codebooks"
        else _open_npy(where[name], None, None)
        for name in names
    }
    _schema.check_arrays(meta, arrays, where)
    if verify:
        _schema.verify_checksums(meta, arrays, where)
    _schema.check_seal(raw_meta, meta_path)
    store = DiskStore(path, mmap_mode, meta) if mmap_mode else None
    return meta, arrays, store


def _open_npy(path, rows, mmap_mode):
    """The first ``rows`` rows (all for None) of the ``.npy`` file ``path``."""
    _, shape, dtype, offset = _read_header(path)
    if dtype.hasobject:
        raise IndexFormatError(f"{path}: holds Python objects (dtype {dtype}).")
    if not shape:
        raise IndexFormatError(f"{path}: holds a 0-d array, not one row per item.")
    if rows is None:
        rows = shape[0]
    elif shape[0] < rows:
        raise IndexFormatError(
            f"{path}: holds {shape[0]} rows but the index has {rows} items."
        )
    shape = (rows,) + tuple(shape[1:])
    n_bytes = dtype.itemsize * math.prod(shape)
    size = os.path.getsize(path)
    if size < offset + n_bytes:
        raise IndexFormatError(
            f"{path}: is truncated ({size} bytes, {offset + n_bytes} needed for "
            f"{rows} rows of shape {shape[1:]} and dtype {dtype})."
        )
    if n_bytes == 0:
        return np.zeros(shape, dtype=dtype)
    if mmap_mode:
        return np.memmap(path, dtype=dtype, mode=mmap_mode, offset=offset, shape=shape)
    with open(path, "rb") as f:
        f.seek(offset)
        data = np.fromfile(f, dtype=dtype, count=math.prod(shape))
    return data.reshape(shape)


def reopen(est, store):
    """Map the arrays of ``store``'s manifest into the fitted ``est``."""
    meta = store.manifest
    n = meta["n_samples_fit"]
    arrays = {
        name: _open_npy(os.path.join(store.path, e["file"]), n, store.mode)
        for name, e in meta["arrays"].items()
        if name != "codebooks"
    }
    est._install(arrays, n_samples=n)
    est._store = store


# --------------------------------------------------------------------------- #
# add on disk
# --------------------------------------------------------------------------- #


def append(est, new, dtypes):
    """Append the rows ``new`` (by array name) to the files of ``est``'s store.

    ``dtypes`` gives a widened dtype for some arrays (their file is then
    rewritten). Either every file and the manifest are updated, or (on any
    error) the files are put back as they were; a writer killed part-way
    leaves the old manifest, which reads the old rows. Returns the arrays,
    re-mapped, by name.
    """
    store = est._store
    path, old = store.path, store.manifest
    meta_path = os.path.join(path, MANIFEST)
    try:
        with open(meta_path, encoding="utf-8") as f:
            current = json.load(f)
    except (OSError, ValueError):
        current = None
    if (
        not isinstance(current, dict)
        or current.get("generation", 1) != old["generation"]
    ):
        raise IndexFormatError(
            f"{meta_path}: the index changed on disk since it was loaded; load it "
            "again before add."
        )
    n_old = old["n_samples_fit"]
    n_new = next(iter(new.values())).shape[0]
    gen = old["generation"] + 1
    manifest = base_meta(est, n_samples=n_old + n_new)
    manifest["arrays"] = {k: dict(v) for k, v in old["arrays"].items()}
    manifest["generation"] = gen
    undo = []
    try:
        for name, rows in new.items():
            entry = manifest["arrays"][name]
            target = np.dtype(
                dtypes.get(name, np.dtype(entry.get("dtype", rows.dtype)))
            )
            rows = np.ascontiguousarray(rows, dtype=target)
            fname, rewritten = _append_file(
                path, entry["file"], name, n_old, rows, gen, undo
            )
            full = _open_npy(os.path.join(path, fname), n_old + n_new, "r")
            segments = entry.get("sha256")
            if rewritten or not isinstance(segments, list):
                segments = [[n_old, _schema.digest(full, 0, n_old)]]
            entry.update(
                file=fname,
                dtype=full.dtype.str,
                shape=list(full.shape),
                sha256=[*segments, [n_new, _schema.digest(rows)]],
            )
            del full
        for name, entry in manifest["arrays"].items():  # version-1 files
            if name not in new and not isinstance(entry.get("sha256"), list):
                a = _open_npy(os.path.join(path, entry["file"]), None, "r")
                entry.update(
                    dtype=a.dtype.str,
                    shape=list(a.shape),
                    sha256=[[int(a.shape[0]), _schema.digest(a)]],
                )
                del a
        _write_json_atomic(meta_path, manifest)
    except BaseException:
        _undo(undo)
        raise
    old_files = {e["file"] for e in old["arrays"].values()}
    _remove(path, old_files - {e["file"] for e in manifest["arrays"].values()})
    reopen(est, DiskStore(path, store.mode, manifest))


def _append_file(path, fname, name, n_old, rows, gen, undo):
    """Append ``rows`` after the first ``n_old`` rows of ``fname``.

    In place when the dtype is unchanged and the header can hold the new
    shape (rows past ``n_old`` are cut first); otherwise into a new file
    ``<name>.g<gen>.npy``. Returns (file name, whether it is a new file).
    """
    fpath = os.path.join(path, fname)
    version, shape, dtype, offset = _read_header(fpath)
    rest = tuple(shape[1:])
    if rows.shape[1:] != rest:
        raise IndexFormatError(
            f"{fpath}: holds rows of shape {rest}; cannot append rows of shape "
            f"{rows.shape[1:]}."
        )
    n_total = n_old + rows.shape[0]
    end = offset + n_old * dtype.itemsize * math.prod(rest)
    header = _header_bytes(version, (n_total, *rest), dtype)
    if rows.dtype == dtype and len(header) == offset:
        undo.append(("cut", fpath, end, _header_bytes(version, (n_old, *rest), dtype)))
        with open(fpath, "r+b") as f:
            _checkpoint(f"append {fname}")
            f.truncate(end)
            f.seek(end)
            f.write(rows.tobytes())
            f.flush()
            os.fsync(f.fileno())
            _checkpoint(f"header {fname}")
            f.seek(0)
            f.write(header)
            f.flush()
            os.fsync(f.fileno())
        return fname, False
    new_name = f"{name}.g{gen}.npy"
    new_path = os.path.join(path, new_name)
    undo.append(("remove", new_path))
    old_rows = np.memmap(
        fpath, dtype=dtype, mode="r", offset=offset, shape=(n_old, *rest)
    )
    _checkpoint(f"write {new_name}")
    out = np.lib.format.open_memmap(
        new_path, mode="w+", dtype=rows.dtype, shape=(n_total, *rest)
    )
    for sl in _schema.row_chunks(old_rows):
        out[sl] = old_rows[sl]
    out[n_old:] = rows
    out.flush()
    del out, old_rows
    with open(new_path, "r+b") as f:
        os.fsync(f.fileno())
    return new_name, True


def _undo(undo):
    """Put the files of a failed ``append`` back as the manifest reads them."""
    for step in reversed(undo):
        try:
            if step[0] == "cut":
                _, fpath, end, header = step
                with open(fpath, "r+b") as f:
                    f.truncate(end)
                    f.seek(0)
                    f.write(header)
                    f.flush()
                    os.fsync(f.fileno())
            else:
                os.remove(step[1])
        except OSError:
            pass
