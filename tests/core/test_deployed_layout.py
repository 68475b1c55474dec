"""Deployed codes are compared in the file's layout, also where ONNX Runtime runs channels-last.

Found on openWakeWord's speech embedding (tf2onnx: Conv -> LeakyRelu -> Max, twenty
times): its W8A8 export passed, but the report said the quantized activations were
"at most 255 LSB apart", with 90% of the codes differing. ONNX Runtime's NHWC
transformer had run the QLinearConv chain channels-last under the same tensor names,
and the check compared the flattened NHWC codes with the file's NCHW ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bitlens.core.engine import Engine, nchwc
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.export.fidelity import check_fidelity
from bitlens.core.export.probes import in_layout_of
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from tests.builders import conv_chain
from tests.core.export_models import random_feeds


def test_channels_last_codes_are_compared_element_by_element(tmp_path: Path, monkeypatch) -> None:
    # conv0, conv1 become QLinearConv + QLinearLeakyRelu, which ONNX Runtime runs channels-last.
    # The engine's convs on the plain NCHW path: on its NCHWc kernels (engine/nchwc.py) it
    # predicts this file bit for bit, and no code is compared.
    monkeypatch.setattr(nchwc, "ENABLED", False)
    m = from_proto(conv_chain("leaky_max", size=(12, 10), kernel=3))
    engine = Engine(m, random_feeds(m.info, 4), device="cpu")
    plan = Plan.preset(engine.info, "W8A8")
    result = drain(export(engine, plan, tmp_path / "q.onnx", ExportOptions()))
    report = drain(check_fidelity(engine, plan, result, latency_budget_s=0.0))
    assert report.passed, report.failures
    probed = [q for q in report.quantizers if q.max_lsb is not None]
    assert probed
    for q in probed:  # a few LSB of integer-kernel drift, on a few codes; not a permutation
        assert q.max_lsb <= 8, (q.activation, q.max_lsb)
        assert q.differing is not None and q.differing < 0.05, (q.activation, q.differing)


def test_in_layout_of() -> None:
    ref = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    nhwc = ref.transpose(0, 2, 3, 1)
    assert [np.array_equal(c, ref) for c in in_layout_of(ref, ref)] == [True]
    assert [np.array_equal(c, ref) for c in in_layout_of(ref, nhwc)] == [True]
    assert in_layout_of(ref, ref.reshape(2, 60)) == []
    cube = np.arange(2 * 3 * 3 * 3).reshape(2, 3, 3, 3)  # both readings possible
    assert len(in_layout_of(cube, cube)) == 2
