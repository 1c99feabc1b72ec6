"""The ground floor: records (``Dataset``, ``Molecule``), ``InputError``, units and target specs, the cache and
atomic writes. Every other package may import ``core``; ``core`` imports none of them."""
from elprop.core.dataset import Dataset, InputError, Molecule

__all__ = ["Dataset", "Molecule", "InputError"]
