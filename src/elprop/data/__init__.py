"""Readers, the columnar Dataset, splits, units and the on-disk cache."""
from elprop.data.dataset import Dataset, Molecule, InputError

__all__ = ["Dataset", "Molecule", "InputError"]
