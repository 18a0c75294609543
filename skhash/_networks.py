"""Torch towers: one network per modality, mapping features to codes' space."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLPTower", "MultiTower"]


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
    by modality; an ``index`` entry (the rows' positions in the training
    set) is passed through untouched, for losses that look up per-item state.

    Parameters
    ----------
    towers : dict of str to torch.nn.Module
        The networks, by modality name.

    Examples
    --------
    >>> import torch
    >>> from skhash.nn import MLPTower, MultiTower
    >>> net = MultiTower({"img": MLPTower(4, 8, ()), "txt": MLPTower(3, 8, ())})
    >>> out = net(img=torch.zeros(2, 4), txt=torch.zeros(2, 3))
    >>> sorted(out), out["img"].shape
    (['img', 'txt'], torch.Size([2, 8]))
    """

    def __init__(self, towers):
        super().__init__()
        self.towers = nn.ModuleDict(towers)

    def forward(self, **batch):
        out = {name: tower(batch[name]) for name, tower in self.towers.items()}
        if "index" in batch:
            out["index"] = batch["index"]
        return out

    @torch.no_grad()
    def encode(self, modality, X):
        """Output of one modality's tower, without gradient.

        Parameters
        ----------
        modality : str
            Name of the tower.
        X : torch.Tensor of shape (n_samples, n_features)
            That modality's (standardised) features.

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
        return self.towers[modality](X)
