"""The learners' embeddings: the fitted towers run over inputs in chunks,
checked for divergence, and turned into a :class:`~skhash.CodeSet` by
``transform``. A mixin of :class:`~skhash._base.BaseCodeLearner`, which
provides ``net_``, ``device_``, ``n_jobs``, ``_fitted_view``, ``_diverged``
and the subclasses' ``_codes_from_embeddings``."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from skhash._inputs import _CHUNK_ELEMENTS
from skhash._modalities import SINGLE_MODALITY
from skhash._training import _bare_module, torch_threads


class _LearnerEmbedding:
    """Embedding of inputs by a learner's net, and ``transform``."""

    @staticmethod
    def _chunk_rows(a):
        per_item = int(np.prod(a.shape[1:], dtype=np.int64))
        return max(1, min(4096, _CHUNK_ELEMENTS // max(per_item, 1)))

    @classmethod
    def _embed(cls, net, modality, inputs, device, batch_size=None):
        module = _bare_module(net.module_)
        if device is None:  # an accelerated net places itself
            device = next(
                (t.device for t in (*module.parameters(), *module.buffers())), "cpu"
            )
        was_training = module.training
        module.eval()
        out = None  # filled in place: no list of chunks, no second copy
        n = inputs.shape[0]
        rows = batch_size or cls._chunk_rows(inputs)
        with torch.no_grad():
            for start in range(0, n, rows):
                chunk = np.array(inputs[start : start + rows])  # writable copy
                xb = torch.from_numpy(chunk).to(device)
                emb = module.encode(modality, xb).float().cpu().numpy()
                if out is None:
                    out = np.empty((n, *emb.shape[1:]), dtype=np.float32)
                out[start : start + len(emb)] = emb
        module.train(was_training)
        if out is None:  # no item: the width of an empty batch's output
            with torch.no_grad():
                xb = torch.from_numpy(np.array(inputs[:0])).to(device)
                out = module.encode(modality, xb).float().cpu().numpy()
        return out

    def _embed_training_data(self, net, X, when=None):
        """Embeddings of the training inputs (used by per-epoch callbacks)."""
        embeddings = {
            name: self._embed(net, name, X[name], net.device)
            for name in _bare_module(net.module_).towers
        }
        self._check_embeddings(
            embeddings, when or f"at the end of epoch {len(net.history)}"
        )
        return embeddings

    def _check_embeddings(self, embeddings, when):
        # the last optimizer step can send the weights to NaN/inf while the
        # loss of its batch was still finite; k-means or CodeSet would then
        # fail on "Input X contains NaN" with no hint of the cause
        for name, emb in embeddings.items():
            if not np.isfinite(emb).all():
                who = "" if name == SINGLE_MODALITY else f" of modality {name!r}"
                raise self._diverged(
                    f"the embeddings{who} of the training items became NaN or "
                    f"infinite {when}"
                )

    # -- transform -------------------------------------------------------------
    def transform(self, X):
        """Encode items into compact codes.

        Parameters
        ----------
        X : MultiModal or array-like of shape (n_samples, ...)
            Items with any subset of the modalities seen in ``fit``.

        Returns
        -------
        codes : CodeSet
            Embeddings and codes per modality (see the learner for which
            parts it produces), with the shared codebooks.
        """
        check_is_fitted(self, "net_")
        with torch_threads(self.n_jobs):
            return self._transform(X)

    def _transform(self, X):
        arrays = self._check_transform_X(X)
        from skhash._codes import CodeSet

        # the codes of the fitted structure: parameters such as n_bits changed
        # by set_params after fit take effect at the next fit only
        fitted = self._fitted_view()
        parts = {}
        for name, a in arrays.items():
            emb = self._embed(self.net_, name, a, self.device_)
            parts[name] = fitted._codes_from_embeddings(name, emb)
        if len(parts) == 1 and tuple(parts) == self.modalities_:
            codes = next(iter(parts.values()))
        else:
            codes = CodeSet.from_modalities(**parts)
        return codes._with_model(getattr(self, "_model_fingerprint", None))
