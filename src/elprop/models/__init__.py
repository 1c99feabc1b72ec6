"""Torch modules of the model families and their registry (``registry.py``: one entry per family)."""
from elprop.models.registry import MODELS, OPTIONS, Family, Option, build_model, family, register

__all__ = ["MODELS", "OPTIONS", "Family", "Option", "build_model", "family", "register"]
