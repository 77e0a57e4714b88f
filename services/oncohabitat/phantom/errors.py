"""Domain exceptions of the phantom generator."""

from __future__ import annotations


class PhantomError(ValueError):
    """Bad input to the phantom generator (unknown size, layout, mask kind, invalid option)."""
