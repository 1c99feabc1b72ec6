"""The ``elprop`` command."""
