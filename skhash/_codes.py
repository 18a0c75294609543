"""CodeSet: the compact codes a learner produces, per modality."""

from __future__ import annotations

import hashlib
import numbers

import numpy as np

from skhash.utils._rows import row_key
from skhash.utils._validation import check_real_float32

__all__ = ["CodeSet", "pack_bits", "unpack_bits"]

_PARTS = ("embedding", "bits", "codes")
_KINDS = ("additive", "product")
#: Largest number of codewords per codebook a CodeSet holds (codes are stored
#: as uint8 up to 256 codewords, else uint16).
MAX_CODEWORDS = 65536
_ATTRS = ("n_bits", "codebooks", "codebook_kind")
#: What indexing a CodeSet by rows accepts (formatted with n_samples).


def codebook_fingerprint(codebooks, kind):
    """Short hex digest of the codebooks' values, shape and kind (or None).

    Two code sets share a fingerprint exactly when their codebooks are the
    same float32 values of the same shape and kind, so codes made by one
    quantizer are never searched against another's.
    """
    if codebooks is None:
        return None
    # + 0.0 turns -0.0 into 0.0: equal values must give equal digests
    codebooks = np.ascontiguousarray(codebooks, dtype=np.float32) + np.float32(0.0)
    h = hashlib.sha256(f"{kind}|{codebooks.shape}|float32|".encode())
    h.update(codebooks.tobytes())
    return h.hexdigest()[:16]


def check_n_bits(n_bits, name="n_bits"):
    """``n_bits`` as an int >= 1, or a ValueError naming it and the fix."""
    if isinstance(n_bits, (bool, np.bool_)) or not isinstance(n_bits, numbers.Integral):
        raise ValueError(
            f"{name}={n_bits!r} must be a positive int (bool is not accepted), "
            f"the number of bits per item; pass e.g. {name}=16."
        )
    if n_bits < 1:
        raise ValueError(
            f"{name}={n_bits} must be >= 1, the number of bits per item; pass "
            f"e.g. {name}=16."
        )
    return int(n_bits)


def _check_n_bytes(n_bytes, n_bits, what):
    """ValueError unless ``n_bytes == ceil(n_bits / 8)``; ``what`` names the bits."""
    if n_bytes != _n_bytes(n_bits):
        lo, hi = 8 * n_bytes - 7, 8 * n_bytes
        fix = (
            f"pass the n_bits the codes were packed with (between {lo} and {hi} "
            f"for {n_bytes} bytes)"
            if n_bytes
            else "pass at least one byte per item"
        )
        raise ValueError(
            f"{what} have {n_bytes} bytes per item but n_bits={n_bits} needs "
            f"{_n_bytes(n_bits)} (ceil(n_bits / 8)); {fix}."
        )


def _readonly(a):
    """A read-only view of ``a`` (the caller's array keeps its flags)."""
    if a is None:
        return None
    v = a.view()
    v.flags.writeable = False
    return v


def pack_bits(signs):
    """Pack signs (or 0/1 bits) into bytes, in numpy ``packbits`` order.

    A value ``> 0`` becomes bit 1, anything else bit 0 (so ``sgn`` with
    ``sgn(0) = -1`` maps to 0).

    Parameters
    ----------
    signs : array-like of shape (n_samples, n_bits)
        Real values, ±1 or 0/1.

    Returns
    -------
    bits : ndarray of shape (n_samples, ceil(n_bits / 8)), dtype uint8
        Packed codes, the first bit in the most significant position of the
        first byte, as :func:`numpy.packbits` and faiss's binary indexes use.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash import pack_bits, unpack_bits
    >>> b = pack_bits(np.array([[1.0, -1, 1, 1, -1, -1, -1, -1, 1]]))
    >>> b
    array([[176, 128]], dtype=uint8)
    >>> unpack_bits(b, 9)
    array([[ 1, -1,  1,  1, -1, -1, -1, -1,  1]], dtype=int8)
    """
    signs = np.asarray(signs)
    if signs.ndim != 2:
        raise ValueError(f"signs must be 2-D (n_samples, n_bits); got {signs.shape}.")
    if signs.dtype.kind == "O":
        # e.g. a DataFrame's values: compare as numbers, with the NaN check below
        try:
            signs = signs.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                "signs of dtype object must hold real numbers (±1, 0/1 or real "
                f"values); converting them to float failed: {exc}"
            ) from None
    if signs.dtype.kind not in "biuf":
        raise ValueError(
            f"signs must be real numbers (±1, 0/1 or real values); got dtype "
            f"{signs.dtype}. For complex values pass e.g. signs.real."
        )
    if signs.dtype.kind == "f" and not np.isfinite(signs).all():
        bad = np.argwhere(~np.isfinite(signs))[0]
        raise ValueError(
            f"signs hold NaN or inf (first at row {bad[0]}, column {bad[1]}): "
            "NaN would silently become bit 0. Check the embeddings that made "
            "them (a diverged model?) before packing."
        )
    return np.packbits(signs > 0, axis=1)


def unpack_bits(bits, n_bits):
    """Unpack packed codes into ±1 signs.

    Parameters
    ----------
    bits : ndarray of shape (n_samples, ceil(n_bits / 8)), dtype uint8
        Packed codes, as made by :func:`pack_bits`.
    n_bits : int
        Number of bits per item.

    Returns
    -------
    signs : ndarray of shape (n_samples, n_bits), dtype int8
        ``+1`` for a set bit, ``-1`` otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash import unpack_bits
    >>> unpack_bits(np.array([[255]], dtype=np.uint8), 3)
    array([[1, 1, 1]], dtype=int8)
    """
    bits = np.asarray(bits)
    if bits.dtype != np.uint8 or bits.ndim != 2:
        raise ValueError(
            f"bits must be a 2-D uint8 array; got dtype {bits.dtype} and shape "
            f"{bits.shape}."
        )
    n_bits = check_n_bits(n_bits)
    _check_n_bytes(bits.shape[1], n_bits, "bits")
    unpacked = np.unpackbits(bits, axis=1, count=n_bits).astype(np.int8)
    return 2 * unpacked - 1


def _n_bytes(n_bits):
    return (n_bits + 7) // 8


def _holds_bits(parts):
    """Whether any modality of ``parts`` (name -> part -> array) holds bits."""
    return any(p.get("bits") is not None for p in parts.values())


class CodeSet:
    """Compact codes of a set of items, one part per modality.

    What a learner's ``transform`` returns and what
    :class:`~skhash.TwoStageRetriever` indexes and queries. For each modality
    it holds up to three parts, any of which may be absent:

    * ``embedding``: the continuous float32 features (``d`` values); queries
      need them for the asymmetric quantizer distance (AQD);
    * ``bits``: binary codes of ``n_bits`` bits, packed into
      ``ceil(n_bits / 8)`` bytes in :func:`numpy.packbits` order (directly
      usable by faiss's binary indexes);
    * ``codes``: quantization codes, ``M`` indices into ``K`` codewords.

    The codebooks (``M, K, d``) are shared by all modalities, with their kind:
    ``"additive"`` (every codeword spans all ``d`` dimensions, as in HQ) or
    ``"product"`` (block-diagonal, each codebook lives on its own block of
    dimensions, as in DQN). Indexing with a modality name gives that
    modality's ``CodeSet``; indexing with rows (slice, integer array, mask)
    gives those rows of every modality and keeps the shared codebooks.

    A ``CodeSet`` is immutable: its parts are read-only views (the arrays
    passed in keep their flags; a part shares memory with its input when no
    conversion was needed), the codebooks are its own copy, and its
    attributes cannot be set.

    Read more in the :ref:`User Guide <codes>`.

    Parameters
    ----------
    embedding : array-like of shape (n_samples, d), default=None
        Continuous features of a single modality.
    bits : ndarray of shape (n_samples, ceil(n_bits / 8)), dtype uint8, default=None
        Packed binary codes of a single modality.
    codes : array-like of int of shape (n_samples, M), default=None
        Quantization codes of a single modality.
    n_bits : int, default=None
        Bits per item, a positive int; required with ``bits`` unless it is
        ``8 * bits.shape[1]``. The padding bits of the last byte are ignored
        by the search (cleared before any distance is computed).
    codebooks : array-like of shape (M, K, d), default=None
        Shared codebooks; required with ``codes``. At most 65,536 codewords
        per codebook (codes are stored as uint8 up to 256, else uint16).
    codebook_kind : {"additive", "product"}, default=None
        How the codebooks combine; required with ``codebooks``.
        ``"product"`` codebooks are block-diagonal: codebook ``m`` is zero
        outside block ``m`` of ``product_blocks(d, M)``
        (:func:`~skhash.quantization.product_blocks`; else a ValueError:
        use ``"additive"`` for them).
    modality : str, default="X"
        Name of the single modality.
    model_fingerprint : str, default=None
        Identifies the model that made the codes: a learner's ``transform``
        sets it (a digest of its fitted network, scalers and codebooks), and
        :class:`~skhash.TwoStageRetriever` rejects queries and additions
        from another model than the indexed codes'. None (codes built by
        hand or by another tool) is not checked.

    Attributes
    ----------
    modalities : tuple of str
        Modality names.
    n_bits : int or None
        Bits per item, or None without binary codes.
    codebooks : ndarray of shape (M, K, d) or None
        The shared codebooks.
    codebook_kind : str or None
        ``"additive"`` or ``"product"``.
    model_fingerprint : str or None
        The model that made the codes, or None.

    See Also
    --------
    CodeSet.from_modalities : Combine single-modality code sets.
    TwoStageRetriever : Searches a ``CodeSet``.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash import CodeSet, pack_bits
    >>> rng = np.random.RandomState(42)
    >>> emb = rng.randn(5, 16).astype(np.float32)
    >>> cs = CodeSet(embedding=emb, bits=pack_bits(emb), n_bits=16)
    >>> cs.bits.shape, cs.n_bits, cs.codes is None
    ((5, 2), 16, True)
    >>> both = CodeSet.from_modalities(img=cs, txt=cs[::-1])
    >>> both["txt"].embedding.shape, len(both[:3])
    ((5, 16), 3)
    """

    def __init__(
        self,
        embedding=None,
        bits=None,
        codes=None,
        *,
        n_bits=None,
        codebooks=None,
        codebook_kind=None,
        modality="X",
        model_fingerprint=None,
    ):
        if not isinstance(modality, str) or not modality or "->" in modality:
            raise ValueError(
                f"modality={modality!r} must be a non-empty name without '->' "
                "(directions are written 'img->txt'); pass e.g. modality='img'."
            )
        if model_fingerprint is not None and (
            not isinstance(model_fingerprint, str) or not model_fingerprint
        ):
            raise ValueError(
                f"model_fingerprint={model_fingerprint!r} must be a non-empty str "
                "(a learner's transform sets it) or None; pass None for codes "
                "made without a skhash learner."
            )
        codebooks, codebook_kind = self._check_codebooks(codebooks, codebook_kind)
        part, n_bits = self._check_part(
            modality,
            {"embedding": embedding, "bits": bits, "codes": codes},
            n_bits,
            codebooks,
        )
        self._init(
            {modality: part},
            n_bits=n_bits,
            codebooks=codebooks,
            kind=codebook_kind,
            model=model_fingerprint,
        )

    # -- construction -----------------------------------------------------
    def _init(self, parts, *, n_bits, codebooks, kind, fingerprint=None, model=None):
        d = self.__dict__
        d["model_fingerprint"] = model
        d["_parts"] = parts
        d["n_bits"] = n_bits
        d["codebooks"] = codebooks
        d["codebook_kind"] = kind
        d["_fingerprint"] = fingerprint
        d["_n"] = next(
            v.shape[0] for p in parts.values() for v in p.values() if v is not None
        )

    @classmethod
    def _new(cls, parts, *, n_bits, codebooks, kind, fingerprint=None, model=None):
        obj = cls.__new__(cls)
        obj._init(
            parts,
            n_bits=n_bits,
            codebooks=codebooks,
            kind=kind,
            fingerprint=fingerprint,
            model=model,
        )
        return obj

    def _derived(self, parts, n_bits=None):
        """A CodeSet of other parts with the same codebooks (and fingerprint).

        It keeps ``n_bits`` (or takes the given one) only while a modality
        still holds bits.
        """
        if n_bits is None:
            n_bits = self.n_bits
        if not _holds_bits(parts):
            n_bits = None
        return self._new(
            parts,
            n_bits=n_bits,
            codebooks=self.codebooks,
            kind=self.codebook_kind,
            fingerprint=self.__dict__.get("_fingerprint"),
            model=self.model_fingerprint,
        )

    def _with_model(self, model_fingerprint):
        """The same codes, marked as made by the model ``model_fingerprint``."""
        out = self._derived(self._parts)
        out.__dict__["model_fingerprint"] = model_fingerprint
        return out

    def __setattr__(self, name, value):
        raise AttributeError(
            f"CodeSet is read-only: cannot set {name!r}. Build a new one, e.g. "
            "CodeSet(embedding=..., bits=..., n_bits=...)."
        )

    def __delattr__(self, name):
        raise AttributeError(f"CodeSet is read-only: cannot delete {name!r}.")

    @property
    def fingerprint(self):
        """Short hex digest of the codebooks (values, shape, kind), or None.

        Computed once, on first use, and kept by slicing, :meth:`without`
        and :meth:`from_modalities`. :class:`~skhash.TwoStageRetriever`
        stores it at fit and rejects queries and additions whose codebooks
        have another fingerprint.
        """
        fp = self.__dict__.get("_fingerprint")
        if fp is None and self.codebooks is not None:
            fp = codebook_fingerprint(self.codebooks, self.codebook_kind)
            self.__dict__["_fingerprint"] = fp
        return fp

    @staticmethod
    def _check_codebooks(codebooks, kind):
        if codebooks is None:
            if kind is not None and kind not in _KINDS:
                raise ValueError(
                    f"codebook_kind must be one of {_KINDS}; got {kind!r}."
                )
            return None, None
        codebooks = np.asarray(codebooks)
        if codebooks.ndim != 3 or 0 in codebooks.shape:
            raise ValueError(
                f"codebooks must have shape (M, K, d) with M, K, d >= 1; got "
                f"{codebooks.shape}."
            )
        if codebooks.shape[1] > MAX_CODEWORDS:
            raise ValueError(
                f"codebooks have K={codebooks.shape[1]} codewords per codebook; "
                f"at most {MAX_CODEWORDS:,} are supported (codes are stored as "
                "uint16): use fewer codewords per codebook, e.g. more codebooks "
                "of 256."
            )
        codebooks = check_real_float32(
            codebooks,
            "codebooks",
            "pass finite codebooks, e.g. a fitted learner's codebooks_.",
        ).copy()  # the CodeSet's own copy, whatever was passed in
        if kind not in _KINDS:
            raise ValueError(
                f"codebook_kind must be one of {_KINDS} when codebooks are given; "
                f"got {kind!r}."
            )
        if kind == "product":
            # the product distances (one block of dimensions per codebook)
            # drop the cross terms of codebooks that overlap
            from skhash.quantization._checks import _check_block_diagonal

            _check_block_diagonal(codebooks)
        codebooks.flags.writeable = False
        return codebooks, kind

    @staticmethod
    def _check_part(name, part, n_bits, codebooks):
        if n_bits is not None:
            n_bits = check_n_bits(n_bits)
        out = {}
        n_rows = {}
        if part.get("embedding") is not None:
            emb = np.asarray(part["embedding"])
            if emb.ndim != 2 or emb.shape[1] == 0:
                raise ValueError(
                    f"embedding of modality {name!r} must be 2-D with at least "
                    f"one column; got shape {emb.shape}."
                )
            emb = check_real_float32(
                emb,
                f"the embeddings of modality {name!r}",
                "check the model that made them (a diverged fit?) or the inputs.",
            )
            out["embedding"] = emb
            n_rows["embedding"] = emb.shape[0]
        if part.get("bits") is not None:
            bits = np.asarray(part["bits"])
            if bits.dtype != np.uint8 or bits.ndim != 2:
                raise ValueError(
                    f"bits of modality {name!r} must be packed uint8 of shape "
                    f"(n_samples, ceil(n_bits / 8)); got dtype {bits.dtype}, "
                    f"shape {bits.shape}. Use skhash.pack_bits(signs)."
                )
            if n_bits is None:
                n_bits = 8 * bits.shape[1]
                if n_bits == 0:
                    raise ValueError(
                        f"bits of modality {name!r} have 0 bytes per item; "
                        "pass at least one bit per item."
                    )
            _check_n_bytes(bits.shape[1], n_bits, f"bits of modality {name!r}")
            out["bits"] = bits
            n_rows["bits"] = bits.shape[0]
        if part.get("codes") is not None:
            if codebooks is None:
                raise ValueError(
                    f"codes of modality {name!r} need the codebooks they index; "
                    "pass codebooks= and codebook_kind=."
                )
            codes = np.asarray(part["codes"])
            M, K, _ = codebooks.shape
            if codes.ndim != 2 or codes.shape[1] != M:
                raise ValueError(
                    f"codes of modality {name!r} must have shape (n_samples, {M}) "
                    f"for {M} codebooks; got {codes.shape}."
                )
            if not np.issubdtype(codes.dtype, np.integer):
                raise ValueError(
                    f"codes of modality {name!r} must be integers; got {codes.dtype}."
                )
            if codes.size and (codes.min() < 0 or codes.max() >= K):
                raise ValueError(
                    f"codes of modality {name!r} must lie in [0, {K}) for "
                    f"n_codewords={K}; got values in [{codes.min()}, {codes.max()}]."
                )
            out["codes"] = codes.astype(np.uint8 if K <= 256 else np.uint16, copy=False)
            n_rows["codes"] = codes.shape[0]
            if "embedding" in out and out["embedding"].shape[1] != codebooks.shape[2]:
                raise ValueError(
                    f"embedding of modality {name!r} has {out['embedding'].shape[1]} "
                    f"dims but the codebooks have d={codebooks.shape[2]}."
                )
        if not out:
            raise ValueError(
                f"Modality {name!r} has no part: give at least one of embedding, "
                "bits or codes."
            )
        if len(set(n_rows.values())) != 1:
            raise ValueError(
                f"The parts of modality {name!r} have different numbers of rows: "
                f"{n_rows}."
            )
        if "bits" not in out:
            n_bits = None  # "None without binary codes": nothing to count
        return {p: _readonly(out.get(p)) for p in _PARTS}, n_bits

    @classmethod
    def from_modalities(cls, **code_sets):
        """Combine single-modality code sets into a cross-modal one.

        Parameters
        ----------
        **code_sets : CodeSet
            One single-modality ``CodeSet`` per modality name. They must share
            the same codebooks (or have none) and the same ``n_bits``.

        Returns
        -------
        code_set : CodeSet
            The combined code set.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash import CodeSet
        >>> a = CodeSet(embedding=np.ones((2, 3)))
        >>> CodeSet.from_modalities(img=a, txt=a).modalities
        ('img', 'txt')
        """
        if not code_sets:
            raise ValueError("from_modalities needs at least one CodeSet.")
        parts = {}
        ref = next(iter(code_sets.values()))
        # n_bits describes the bits: compare it among the modalities holding them
        bits_ref = next(
            (
                (n, cs)
                for n, cs in code_sets.items()
                if isinstance(cs, CodeSet) and _holds_bits(cs._parts)
            ),
            None,
        )
        for name in code_sets:
            if "->" in name:
                raise ValueError(
                    f"Modality name {name!r} must not contain '->' (directions "
                    "are written 'img->txt')."
                )
        for name, cs in code_sets.items():
            if not isinstance(cs, CodeSet) or len(cs.modalities) != 1:
                raise TypeError(
                    f"Modality {name!r} must be a single-modality CodeSet; got "
                    f"{type(cs).__name__}."
                )
            if _holds_bits(cs._parts) and cs.n_bits != bits_ref[1].n_bits:
                raise ValueError(
                    f"Modality {name!r} has n_bits={cs.n_bits}, expected "
                    f"{bits_ref[1].n_bits} (the n_bits of modality {bits_ref[0]!r})."
                )
            if cs.model_fingerprint != ref.model_fingerprint:
                raise ValueError(
                    f"Modality {name!r} was encoded by another model "
                    f"(model_fingerprint {cs.model_fingerprint!r}) than the others "
                    f"({ref.model_fingerprint!r}); encode all modalities with the "
                    "same fitted learner."
                )
            if cs.fingerprint != ref.fingerprint:
                raise ValueError(
                    f"Modality {name!r} does not share the codebooks of the others."
                )
            parts[name] = next(iter(cs._parts.values()))
        n = {name: cs._n for name, cs in code_sets.items()}
        if len(set(n.values())) != 1:
            raise ValueError(f"All modalities need the same number of rows; got {n}.")
        return ref._derived(parts, None if bits_ref is None else bits_ref[1].n_bits)

    # -- access -------------------------------------------------------------
    @property
    def modalities(self):
        return tuple(self._parts)

    def __len__(self):
        return self._n

    @property
    def shape(self):
        return (self._n,)

    @property
    def n_samples(self):
        """Number of items."""
        return self._n

    @property
    def n_codebooks(self):
        """Number of codebooks ``M``, or None."""
        return None if self.codebooks is None else self.codebooks.shape[0]

    @property
    def n_codewords(self):
        """Codewords per codebook ``K``, or None."""
        return None if self.codebooks is None else self.codebooks.shape[1]

    def has(self, part):
        """Whether every modality carries ``part`` ("embedding", "bits", "codes").

        Parameters
        ----------
        part : {"embedding", "bits", "codes"}
            The part.

        Returns
        -------
        present : bool
            True when all modalities have it.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash import CodeSet
        >>> CodeSet(embedding=np.ones((2, 3))).has("bits")
        False
        """
        if part not in _PARTS:
            raise ValueError(f"part must be one of {_PARTS}; got {part!r}.")
        return all(p[part] is not None for p in self._parts.values())

    def _single_part(self, part):
        if len(self._parts) != 1:
            raise AttributeError(
                f"This CodeSet holds the modalities {self.modalities}; pick one "
                f"first, e.g. codes[{self.modalities[0]!r}].{part}."
            )
        return next(iter(self._parts.values()))[part]

    @property
    def embedding(self):
        """Continuous features (float32) of the single modality, or None."""
        return self._single_part("embedding")

    @property
    def bits(self):
        """Packed binary codes (uint8) of the single modality, or None."""
        return self._single_part("bits")

    @property
    def codes(self):
        """Quantization codes (uint8/uint16) of the single modality, or None."""
        return self._single_part("codes")

    def get(self, modality, part):
        """Return one part of one modality (or None when absent).

        Parameters
        ----------
        modality : str
            Modality name.
        part : {"embedding", "bits", "codes"}
            Which part.

        Returns
        -------
        array : ndarray or None
            The part.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash import CodeSet
        >>> CodeSet(embedding=np.ones((2, 3))).get("X", "embedding").dtype
        dtype('float32')
        """
        if modality not in self._parts:
            raise KeyError(
                f"No modality {modality!r}; this CodeSet has {self.modalities}."
            )
        if not isinstance(part, str) or part not in _PARTS:
            raise ValueError(f"part must be one of {_PARTS}; got {part!r}.")
        return self._parts[modality][part]

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self._parts:
                raise KeyError(
                    f"No modality {key!r}; this CodeSet has {self.modalities}."
                )
            return self._derived({key: self._parts[key]})
        if isinstance(key, tuple):
            key = key[0]
        key = self._row_key(key)
        parts = {
            name: {
                p: (None if v is None else _readonly(v[key])) for p, v in part.items()
            }
            for name, part in self._parts.items()
        }
        return self._derived(parts)

    def _row_key(self, key):
        """``key`` as a key selecting rows of the 2-D parts, or an error
        (:func:`skhash.utils._rows.row_key`, the rule MultiModal follows)."""
        return row_key(key, len(self), "CodeSet")

    def without(self, *parts):
        """Return a copy without some parts (e.g. to index no embeddings).

        Parameters
        ----------
        *parts : {"embedding", "bits", "codes"}
            The parts to drop.

        Returns
        -------
        code_set : CodeSet
            A new code set sharing the remaining arrays.

        Examples
        --------
        >>> import numpy as np
        >>> from skhash import CodeSet, pack_bits
        >>> cs = CodeSet(embedding=np.ones((2, 8)), bits=pack_bits(np.ones((2, 8))))
        >>> cs.without("embedding").has("embedding")
        False
        """
        for p in parts:
            if p not in _PARTS:
                raise ValueError(f"parts must be among {_PARTS}; got {p!r}.")
        new = {
            name: {p: (None if p in parts else v) for p, v in part.items()}
            for name, part in self._parts.items()
        }
        for name, part in new.items():
            if all(v is None for v in part.values()):
                raise ValueError(
                    f"without{parts} would leave modality {name!r} with no part; "
                    f"keep at least one of {_PARTS}."
                )
        return self._derived(new)

    # -- size -------------------------------------------------------------
    @property
    def nbytes(self):
        """Bytes of the per-item parts of all modalities, as a dict by part.

        The embeddings count as stored (float32); ``"total"`` sums them, and
        ``"codebooks"`` gives the shared codebooks' size.
        """
        sizes = dict.fromkeys(_PARTS, 0)
        for part in self._parts.values():
            for p, v in part.items():
                if v is not None:
                    sizes[p] += v.nbytes
        sizes["codebooks"] = 0 if self.codebooks is None else self.codebooks.nbytes
        sizes["total"] = sum(sizes.values())
        return sizes

    @property
    def compact_bytes_per_item(self):
        """Bytes per item and modality of the compact parts (bits + codes).

        Quantization codes count ``ceil(log2 K)`` bits each, as an index
        stores them.
        """
        total = 0.0
        if self.n_bits is not None:
            total += self.n_bits / 8
        if self.codebooks is not None and self.has("codes"):
            M, K, _ = self.codebooks.shape
            total += M * int(np.ceil(np.log2(max(K, 2)))) / 8
        return total

    def __repr__(self):
        mods = []
        for name, part in self._parts.items():
            present = [p for p in _PARTS if part[p] is not None]
            mods.append(f"{name}: {'+'.join(present)}")
        extra = ""
        if self.n_bits is not None:
            extra += f", n_bits={self.n_bits}"
        if self.codebooks is not None:
            M, K, d = self.codebooks.shape
            extra += f", codebooks={self.codebook_kind} {M}x{K}x{d}"
        return f"CodeSet(n_samples={self._n}, {{{'; '.join(mods)}}}{extra})"

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "A CodeSet is not an array: use its parts (.embedding, .bits, "
            ".codes) or pick a modality first (codes['img'].bits)."
        )

    def __getstate__(self):
        return self.__dict__

    def __setstate__(self, state):
        state = dict(state)
        state["_parts"] = {
            name: {p: _readonly(v) for p, v in part.items()}
            for name, part in state["_parts"].items()
        }
        state["codebooks"] = _readonly(state.get("codebooks"))
        state.setdefault("_fingerprint", None)
        state.setdefault("model_fingerprint", None)
        if not _holds_bits(state["_parts"]):
            state["n_bits"] = None
        self.__dict__.update(state)
