"""The error of a model file that is not there yet."""

from __future__ import annotations

from symergion.errors import ModelError


class ModelNotFoundError(ModelError):
    """A model file does not exist (yet): it must be placed, pulled or converted."""
