"""Torch modules: graph models and the registry of model families."""
from elprop.models.registry import MODELS, build_model

__all__ = ["MODELS", "build_model"]
