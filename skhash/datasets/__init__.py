"""Datasets: the shipped Wiki benchmark, on-disk loaders and synthetic data."""

from skhash.datasets._base import load_wiki
from skhash.datasets._mat import load_mirflickr, load_nuswide
from skhash.datasets._synthetic import make_cross_modal

__all__ = ["load_mirflickr", "load_nuswide", "load_wiki", "make_cross_modal"]
