"""Torch towers: one network per modality, mapping features to codes' space."""

from __future__ import annotations

import inspect

import numpy as np
import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

__all__ = ["MLPTower", "MultiTower"]


def _tower_kwargs(cls, *, n_features, input_shape, n_outputs, routed):
    """The constructor arguments a custom tower class receives.

    ``n_outputs`` always; ``n_features`` (the number of values of one item)
    when the constructor names it or takes ``**kwargs``; ``input_shape``
    (the shape of one item, e.g. ``(1, 8, 8)``) when it names it; then the
    routed ``module__*`` arguments.
    """
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # not introspectable: the old contract
        return {"n_features": n_features, "n_outputs": n_outputs, **routed}
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if "n_outputs" not in params and not var_kw:
        raise TypeError(
            f"The tower class {getattr(cls, '__name__', cls)!r} must accept the "
            "keyword argument n_outputs (the width of its output); its "
            f"constructor takes {list(params)}."
        )
    kwargs = {"n_outputs": n_outputs}
    if "n_features" in params or (var_kw and "input_shape" not in params):
        kwargs["n_features"] = n_features
    if "input_shape" in params:
        kwargs["input_shape"] = tuple(input_shape)
    kwargs.update(routed)
    return kwargs


class MLPTower(nn.Module):
    """A multi-layer perceptron over precomputed features.

    The default tower of every skhash learner: ``Linear → ReLU → Dropout``
    per hidden layer, then a linear output layer of ``n_outputs`` units.

    Parameters
    ----------
    n_features : int
        Input width (inferred by the learners at fit time).
    n_outputs : int
        Output width: ``n_bits`` for the hashers, ``n_dims`` for DQN.
    hidden_layer_sizes : tuple of int, default=(512,)
        Widths of the hidden layers; ``()`` gives a linear map.
    dropout : float, default=0.1
        Dropout probability after each hidden layer.

    Examples
    --------
    >>> import torch
    >>> from skhash.nn import MLPTower
    >>> tower = MLPTower(n_features=10, n_outputs=16, hidden_layer_sizes=(32,))
    >>> tower(torch.zeros(4, 10)).shape
    torch.Size([4, 16])
    """

    def __init__(self, n_features, n_outputs, hidden_layer_sizes=(512,), dropout=0.1):
        super().__init__()
        layers = []
        width = n_features
        for h in hidden_layer_sizes:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, n_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, X):
        return self.net(X)


class MultiTower(nn.Module):
    """One tower per modality, called by modality name.

    ``forward(**batch)`` takes each modality's batch as a keyword argument
    (that is how skorch feeds a dict input) and returns a dict of outputs
    by modality; ``index`` and ``valid_index`` entries (the rows' positions
    in the training or validation set) are passed through untouched, for
    losses that look up per-item state.

    Each batch goes through the input layer first (:meth:`prepare`): it is
    converted to float32 (so ``uint8`` images and memory-mapped arrays are
    converted a batch at a time, never as a whole set) and, when
    ``scalers`` are given, standardised as ``(x - mean) / scale``.

    Parameters
    ----------
    towers : dict of str to torch.nn.Module
        The networks, by modality name.
    scalers : dict of str to (array, array), default=None
        Per-modality ``(mean, scale)``: one value per feature of 2-D items,
        or per channel (axis 1) of N-D items. Stored as buffers
        (``input_mean_<modality>``, ``input_scale_<modality>``), so they are
        part of the ``state_dict`` and move to the device with the towers.

    Examples
    --------
    >>> import torch
    >>> from skhash.nn import MLPTower, MultiTower
    >>> net = MultiTower({"img": MLPTower(4, 8, ()), "txt": MLPTower(3, 8, ())})
    >>> out = net(img=torch.zeros(2, 4), txt=torch.zeros(2, 3))
    >>> sorted(out), out["img"].shape
    (['img', 'txt'], torch.Size([2, 8]))
    """

    def __init__(self, towers, scalers=None):
        super().__init__()
        self.towers = nn.ModuleDict(towers)
        self._scaled = []
        for name, (mean, scale) in (scalers or {}).items():
            # copies: a buffer must never share (possibly read-only) memory
            mean = torch.from_numpy(np.array(mean, dtype=np.float32))
            scale = torch.from_numpy(np.array(scale, dtype=np.float32))
            self.register_buffer(f"input_mean_{name}", mean)
            self.register_buffer(f"input_scale_{name}", scale)
            self._scaled.append(name)

    def prepare(self, modality, X):
        """The tower's input: the batch as float32, standardised.

        Parameters
        ----------
        modality : str
            Name of the tower.
        X : torch.Tensor of shape (n_samples, ...)
            A batch of that modality's items, of any numeric dtype.

        Returns
        -------
        X_in : torch.Tensor of shape (n_samples, ...)
            float32; ``(X - mean) / scale`` with the per-feature (2-D) or
            per-channel (N-D) statistics when the tower has a scaler.

        Examples
        --------
        >>> import torch
        >>> from skhash.nn import MLPTower, MultiTower
        >>> net = MultiTower({"img": MLPTower(2, 4, ())},
        ...                  scalers={"img": ([1.0, 2.0], [2.0, 2.0])})
        >>> net.prepare("img", torch.tensor([[3, 4]], dtype=torch.uint8))
        tensor([[1., 1.]])
        """
        if X.dtype != torch.float32:
            X = X.to(torch.float32)
        if modality in self._scaled:
            mean = getattr(self, f"input_mean_{modality}")
            scale = getattr(self, f"input_scale_{modality}")
            shape = (1, -1) + (1,) * (X.dim() - 2)
            X = (X - mean.reshape(shape)) / scale.reshape(shape)
        return X

    def materialize(self, input_shapes, n_outputs=None):
        """Run a dry batch through towers with lazy layers, so that their
        parameters exist before an optimizer is built on them; with
        ``n_outputs``, through every tower, checking its output width.

        Parameters
        ----------
        input_shapes : dict of str to tuple of int
            Shape of one item of each modality.
        n_outputs : int or None, default=None
            The width every tower must return, ``(batch, n_outputs)``: a
            ValueError names the tower otherwise (a wrong width trained
            silently into codes of another length, or failed only at
            ``transform``).

        Returns
        -------
        self : MultiTower
            The same module.

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> from skhash.nn import MultiTower
        >>> net = MultiTower({"img": nn.Sequential(nn.Flatten(), nn.LazyLinear(4))})
        >>> net.materialize({"img": (1, 3, 3)}).towers["img"][1].weight.shape
        torch.Size([4, 9])
        """
        for name, tower in self.towers.items():
            lazy = any(isinstance(m, LazyModuleMixin) for m in tower.modules())
            if not lazy and n_outputs is None:
                continue
            was_training = tower.training
            tower.eval()  # no dropout, no change to batch-norm statistics
            with torch.no_grad():
                out = tower(self.prepare(name, torch.zeros((2, *input_shapes[name]))))
            tower.train(was_training)
            shape = tuple(getattr(out, "shape", ()))
            if n_outputs is not None and shape != (2, n_outputs):
                raise ValueError(
                    f"The tower of modality {name!r} returns shape {shape} for a "
                    f"batch of 2 items; it must return (batch, {n_outputs}) (the "
                    "learner's code width: n_bits, or n_dims for DQN). Build it "
                    "with the n_outputs argument the learner passes, or change "
                    "its last layer."
                )
        return self

    def forward(self, **batch):
        out = {
            name: tower(self.prepare(name, batch[name]))
            for name, tower in self.towers.items()
        }
        for key in ("index", "valid_index"):
            if key in batch:
                out[key] = batch[key]
        return out

    @torch.no_grad()
    def encode(self, modality, X):
        """Output of one modality's tower, without gradient.

        Parameters
        ----------
        modality : str
            Name of the tower.
        X : torch.Tensor of shape (n_samples, ...)
            A batch of that modality's items (raw: :meth:`prepare` converts
            and standardises them).

        Returns
        -------
        out : torch.Tensor of shape (n_samples, n_outputs)
            The tower's output.

        Examples
        --------
        >>> import torch
        >>> from skhash.nn import MLPTower, MultiTower
        >>> net = MultiTower({"img": MLPTower(4, 8, ())})
        >>> net.encode("img", torch.zeros(3, 4)).shape
        torch.Size([3, 8])
        """
        return self.towers[modality](self.prepare(modality, X))
