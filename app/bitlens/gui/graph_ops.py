"""Op families of the graph view: a muted tint per family for nodes that are not layers.

Layers are filled with their error colour (YlOrRd, see :mod:`bitlens.gui.colors`);
every other node gets a low-saturation tint of its family (activations violet,
normalizations teal, pooling green, shape and data movement grey), so that a
zoomed-out graph, where no text is drawn, still shows its structure, as Netron
colours its nodes by category (https://github.com/lutzroeder/netron,
``source/grapher.css``). The tints are far from the yellow-to-red error scale.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette

from bitlens.gui import colors

FAMILIES: dict[str, frozenset[str]] = {
    "activation": frozenset({
        "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu",
        "Selu", "Celu", "Gelu", "Erf", "Softplus", "Softsign", "Clip", "Softmax", "LogSoftmax",
        "Mish", "ThresholdedRelu", "Swish",
    }),
    "normalization": frozenset({
        "BatchNormalization", "LayerNormalization", "InstanceNormalization",
        "GroupNormalization", "LpNormalization", "LRN", "SimplifiedLayerNormalization",
        "SkipLayerNormalization", "RMSNormalization", "Dropout",
    }),
    "pooling": frozenset({
        "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool",
        "GlobalLpPool", "ReduceMean", "ReduceMax", "ReduceSum", "ReduceMin",
    }),
    "shape": frozenset({
        "Reshape", "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements",
        "GatherND", "Squeeze", "Unsqueeze", "Flatten", "Shape", "Size", "Cast", "CastLike",
        "Pad", "Resize", "Upsample", "Expand", "Tile", "Identity", "ConstantOfShape",
        "Range", "ScatterND", "ScatterElements", "DepthToSpace", "SpaceToDepth", "NonZero",
    }),
}
_TINTS = {
    "activation": QColor(150, 110, 190),
    "normalization": QColor(70, 160, 150),
    "pooling": QColor(100, 170, 80),
    "shape": QColor(128, 128, 128),
}
_FAMILY_OF = {op: fam for fam, ops in FAMILIES.items() for op in ops}
TINT_SHARE = 0.3  # of the tint mixed into the palette's button colour


def family(op_type: str) -> str:
    """The op's family, "other" when it has none here."""
    return _FAMILY_OF.get(op_type, "other")


def op_color(op_type: str, palette: QPalette) -> QColor:
    """Fill of a node that is not a layer (nor a model input or output)."""
    plain = colors.plain_node_color(palette)
    tint = _TINTS.get(family(op_type))
    if tint is None:
        return plain
    return colors.mix(plain, tint, TINT_SHARE + (0.15 if colors.is_dark(palette) else 0.0))
