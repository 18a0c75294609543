"""Datasets: the shipped Wiki benchmark, on-disk loaders and synthetic data."""

from skhash.datasets._base import load_wiki

__all__ = ["load_wiki"]
