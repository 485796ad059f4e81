"""The fault catalogue: every way a real stream (or a proxy in front of it) misbehaves.

One module per kind, each a `Fault` subclass registered by its `kind` (a duplicate kind fails at import,
naming both classes). Every module of this folder is imported here: adding a kind is one new module.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import KINDS, AtToken, DeliveryFault, Fault, describe, parse

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["KINDS", "AtToken", "DeliveryFault", "Fault", "describe", "parse"]
