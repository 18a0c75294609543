"""The manifest of a sharded index directory: what it holds, written last."""

from __future__ import annotations

import json
import os
import re

import numpy as np

from skhash.retrieval._storage import _jsonable

_FORMAT = "skhash.ShardedRetriever"
_FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
_SHARD_PARAMS = (
    "alpha",
    "n_neighbors",
    "rerank",
    "n_jobs",
    "backend",
    "stage1",
    "n_substrings",
)


# ---------------------------------------------------------------------- #
# manifest
# ---------------------------------------------------------------------- #
def _saved_params():
    return (*_SHARD_PARAMS, "n_shards", "max_shard_size")


def _shard_dir(s):
    return f"shard-{s:05d}"


def _write_manifest(path, *, params, shards, sizes, n_features_in=None):
    """Write ``path/manifest.json`` atomically (a temporary file, then rename)."""
    meta = {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        "params": {k: _jsonable(v) for k, v in params.items()},
        "shards": list(shards),
        "sizes": [int(n) for n in sizes],
        "n_samples_fit": int(np.sum(sizes)),
        "n_features_in": None if n_features_in is None else int(n_features_in),
    }
    tmp = os.path.join(path, f".{_MANIFEST}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(path, _MANIFEST))


def _read_manifest(path):
    """The validated manifest of a sharded index directory."""
    file = os.path.join(path, _MANIFEST)
    if not os.path.isfile(file):
        raise ValueError(
            f"{path!r} is not a sharded index: it has no {_MANIFEST} (written "
            "last by ShardedRetriever.save and build_sharded_index, so a save "
            "or build that did not finish has none). Save or build it again."
        )
    try:
        with open(file, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{file!r} is not a valid manifest: {exc}.") from exc
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"{file!r} was not written by ShardedRetriever.save.")
    if meta.get("version") != _FORMAT_VERSION:
        raise ValueError(
            f"{file!r} has format version {meta.get('version')!r}; this skhash "
            f"reads version {_FORMAT_VERSION}."
        )
    shards, sizes = meta.get("shards"), meta.get("sizes")
    if (
        not isinstance(shards, list)
        or not isinstance(sizes, list)
        or len(shards) != len(sizes)
        or not shards
        or not all(isinstance(s, str) and re.fullmatch(r"shard-\d+", s) for s in shards)
        or not all(isinstance(n, int) and n > 0 for n in sizes)
        or not isinstance(meta.get("params"), dict)
    ):
        raise ValueError(f"{file!r} is damaged: its shard list is not valid.")
    # save and build name the shards in order (a listed twice, reordered or
    # dropped shard would load as another index)
    if shards != [_shard_dir(s) for s in range(len(shards))]:
        raise ValueError(
            f"{file!r} is damaged: its shards are not shard-00000, shard-00001, "
            "... in order. Save or build the index again."
        )
    if meta.get("n_samples_fit") != sum(sizes):
        raise ValueError(
            f"{file!r} is damaged: n_samples_fit={meta.get('n_samples_fit')!r} "
            f"but its shards hold {sum(sizes)} items. Save or build it again."
        )
    unknown = set(meta["params"]) - set(_saved_params())
    if unknown:
        raise ValueError(f"{file!r} has unknown parameters {sorted(unknown)}.")
    return meta
