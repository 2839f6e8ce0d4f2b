"""qpde's hls4ml extension layers (hls4ml Extension API: a Layer subclass, config and function-call
templates per backend, and a C++ header registered as a custom source).

`QpdeMatMulAA`: activation × activation matrix product for io_stream, the two products of Galerkin
linear attention (Kᵀ·V and Q·(KᵀV)). hls4ml 1.3 has no exact streaming layer for it: its MatMul
layer is only an intermediate form turned into Dense (constant weights), Dot is rank 1, Einsum is
io_parallel only. Inputs: stream `a` [n_rows, n_contract] (one beat per row) and stream `b`
[n_contract, n_cols]; output [n_rows, n_cols]. `b` is buffered whole, then each row of `a` yields
one output row. Precisions are explicit (qpde.backends.hls4ml.convert):
- accum_t holds every partial sum exactly (K·max|a|·max|b| at the product's LSB);
- scaled_t is accum_t with its binary point moved by `shift`, the power-of-two factor of a following
  Mul (e.g. the 1/N of Galerkin attention), by reinterpreting the bits (exact);
- result_t is the folded Quant's ap_fixed<…, AP_TRN, AP_SAT> (FLOOR + clip), or the exact type.
"""

from __future__ import annotations

from pathlib import Path

HEADER = Path(__file__).parent / "templates" / "qpde_matmul_aa.h"
CLASS_NAME = "QpdeMatMulAA"
_REGISTERED: set[str] = set()
_CLASSES: tuple = ()

_config_template = """struct config{index} : nnet::qpde_matmul_aa_config {{
    static const unsigned n_rows = {n_rows};
    static const unsigned n_contract = {n_contract};
    static const unsigned n_cols = {n_cols};
    typedef {accum_t.name} accum_t;
    typedef {scaled_t.name} scaled_t;
}};\n"""
_function_template = "nnet::qpde_matmul_aa<{a_t}, {b_t}, {output_t}, {config}>({a}, {b}, {output});"
_include_list = ["nnet_utils/qpde_matmul_aa.h"]


def _classes():
    """The layer and template classes (built lazily: importing hls4ml is slow)."""
    from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
    from hls4ml.model.attributes import Attribute, TypeAttribute
    from hls4ml.model.layers import Layer

    class QpdeMatMulAA(Layer):
        """res = 2^shift · (a @ b) for two activation streams, cast to result_t."""

        _expected_attributes = [
            Attribute("n_rows"),
            Attribute("n_contract"),
            Attribute("n_cols"),
            Attribute("shift", default=0),
            TypeAttribute("accum"),
            TypeAttribute("scaled"),
        ]

        def initialize(self):
            assert len(self.inputs) == 2
            a = self.get_input_variable(self.inputs[0]).shape
            b = self.get_input_variable(self.inputs[1]).shape
            n_rows, n_contract, n_cols = (self.get_attr(k) for k in ("n_rows", "n_contract", "n_cols"))
            if list(a) != [n_rows, n_contract] or list(b) != [n_contract, n_cols]:
                raise ValueError(f"{self.name}: shapes {list(a)} @ {list(b)} do not match "
                                 f"[{n_rows}, {n_contract}] @ [{n_contract}, {n_cols}]")
            self._set_type_t("scaled")  # from the layer's Precision config, like accum_t
            self.add_output_variable([n_rows, n_cols])

    class QpdeMatMulAAConfigTemplate(LayerConfigTemplate):
        def __init__(self):
            super().__init__(QpdeMatMulAA)
            self.template = _config_template

        def format(self, node):
            return self.template.format(**self._default_config_params(node))

    class QpdeMatMulAAFunctionTemplate(FunctionCallTemplate):
        def __init__(self):
            super().__init__(QpdeMatMulAA, include_header=_include_list)
            self.template = _function_template

        def format(self, node):
            a = node.get_input_variable(node.inputs[0])
            b = node.get_input_variable(node.inputs[1])
            out = node.get_output_variable()
            return self.template.format(config=f"config{node.index}", a_t=a.type.name, b_t=b.type.name,
                                        output_t=out.type.name, a=a.name, b=b.name, output=out.name)

    return QpdeMatMulAA, QpdeMatMulAAConfigTemplate, QpdeMatMulAAFunctionTemplate


def register(backend: str) -> None:
    """Register the extension layer with hls4ml and its templates/header with `backend` (idempotent)."""
    import hls4ml

    global _CLASSES
    if backend in _REGISTERED:
        return
    if not _CLASSES:
        _CLASSES = _classes()
        hls4ml.model.layers.register_layer(CLASS_NAME, _CLASSES[0])
    _, config_template, function_template = _CLASSES
    target = hls4ml.backends.get_backend(backend)
    target.register_template(config_template)
    target.register_template(function_template)
    target.register_source(HEADER)
    _REGISTERED.add(backend)
