"""A plan's weight errors and sizes with no input data.

The window opens a model before its input sizes or data are known (a
dynamic width, a sequence length): the layer table, the graph and the
weight errors need no inputs, only activation and output errors do. This
is the :class:`~bitlens.core.results.Evaluation` it shows until then, with
the engine's cached weight quantization, and no outputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bitlens.core import lstm_kernel
from bitlens.core.plan import Plan
from bitlens.core.results import Evaluation, LayerResult
from bitlens.core.weights import stored_bytes, weight_bytes_after

if TYPE_CHECKING:
    from bitlens.core.engine.engine import Engine


def weight_evaluation(engine: Engine, plan: Plan) -> Evaluation:
    """Per-layer weight error and bytes of ``plan``; local, accumulated and output errors
    are absent (None, no outputs) because they need inputs."""
    layers: dict[str, LayerResult] = {}
    kernels = lstm_kernel.kernel_layers(plan)  # stored in the LSTM kernel's layout
    for layer in engine.info.layers:
        choice = plan[layer.name]
        layers[layer.name] = LayerResult(
            name=layer.name,
            weight_format=None if choice.weight is None else choice.weight.name,
            activation_format=None if choice.activation is None else choice.activation.name,
            weight=None if choice.weight is None else engine.weight_error(layer, choice.weight),
            local=None,
            accumulated=None,
            bytes_before=layer.nbytes,
            bytes_after=weight_bytes_after(layer, choice.weight, layer.name in kernels),
        )
    before, after = stored_bytes(
        engine.info.layers, {n: plan[n].weight for n in engine.info.layer_names}, kernels
    )
    return Evaluation(
        layers=layers,
        outputs={},
        bytes_before=before,
        bytes_after=after,
        params=engine.info.params,
        providers=(),
    )
