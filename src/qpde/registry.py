"""What qpde's registries share (ops: qpde.ops.OPS, datasets: qpde.data.registry.DATASETS, models:
qpde.models.ARCHS, backends: qpde.backends.BACKENDS): a name → entry table that refuses a second
entry of the same name, and references "module:attribute" imported on first use, so that a table can
name a backend's handler or a heavy model class without importing it."""

from __future__ import annotations

import functools
import importlib


class Registry(dict):
    """name → entry (a dataclass with a `name`), in registration order."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, entry):
        if entry.name in self:
            raise ValueError(f"{self.kind} {entry.name!r} registered twice")
        self[entry.name] = entry
        return entry


@functools.cache
def resolve(ref: str):
    """The object a "module:attribute" reference names (imported once)."""
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)
