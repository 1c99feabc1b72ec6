"""elprop: instant, data-driven predictions of electronic properties."""

__version__ = "0.1.0"
