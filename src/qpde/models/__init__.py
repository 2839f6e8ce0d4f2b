"""Neural PDE solvers built from Brevitas quant layers, and the architecture registry (`ARCHS`).

Adding an architecture: a module here (a shape dataclass and a model class per spatial dimension,
each `Model(resolution, shape, quant_spec)`), one `Arch(...)` entry below, and a field of that shape
type named after it in qpde.config.SweepConfig (its [name] section of the config).
"""

from __future__ import annotations

from dataclasses import dataclass

from qpde.models.fno import FNOConfig
from qpde.models.transformer import TransformerConfig
from qpde.models.unet import UNetConfig
from qpde.registry import Registry, resolve


@dataclass(frozen=True)
class Arch:
    name: str  # as in the config's `archs` list and in variant ids
    shape: type  # the dataclass of its [name] config section
    classes: dict  # spatial dimensions → "module:Class" of the model

    def model_class(self, ndim: int) -> type | None:
        ref = self.classes.get(ndim)
        return resolve(ref) if ref else None


ARCHS: Registry = Registry("architecture")
register = ARCHS.register


register(Arch("fno", FNOConfig, {1: "qpde.models.fno:FNO1d", 2: "qpde.models.fno:FNO2d"}))
register(Arch("unet", UNetConfig, {1: "qpde.models.unet:UNet1d", 2: "qpde.models.unet:UNet2d"}))
register(Arch("transformer", TransformerConfig,
              {1: "qpde.models.transformer:Transformer1d", 2: "qpde.models.transformer:Transformer2d"}))
