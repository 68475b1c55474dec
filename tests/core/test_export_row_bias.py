"""A Dense bias written as a row ``[1, n]`` (jax2tf: magika's last layer) is stored as int32
codes of that shape, so a 2-D MatMul + Add still runs as QGemm.

ONNX Runtime 1.31 fuses a 2-D MatMul and its bias Add into a Gemm before it matches QDQ
groups; a float C keeps that Gemm float. The int32 grid took vectors only, so the row bias
stayed float and magika's Dense_1 ran as a float Gemm on weights dequantized at every run::

    x[N,16] -> MatMul(w1) -> Add(b1[1,32]) -> Relu -> MatMul(w2) -> Add(b2[1,8]) -> y[N,8]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from bitlens.core.plan import Plan
from tests.core.as_written import assert_file_is_engine
from tests.core.test_export_matmul_add_guard import dense_pair
from tests.core.test_export_models import run
from tests.core.test_export_shared_matmul_bias import optimized_ops


def test_row_bias_is_stored_as_int32_and_the_layer_runs_as_qgemm(tmp_path: Path) -> None:
    # 32 wide: at 64 the storage check flags fc1's per-channel zero points (1 byte per 16)
    engine = dense_pair(row=True, hidden=32)
    plan = Plan.preset(engine.info, "W8A8")
    path = tmp_path / "row.onnx"
    result, report = run(engine, plan, path)
    assert report.passed, report.failures
    assert {la.name: la.kernel for la in report.layers} == {"fc1": "QGemm", "fc2": "QGemm"}
    ops = optimized_ops(path, tmp_path)
    assert ops.count("QGemm") == 2 and "Gemm" not in ops
    assert_file_is_engine(engine, plan, path)
    # the codes keep the row's shape: the float bias rounded at s_x * s_w (float64 reference)
    exported = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in exported.graph.initializer}
    by_out = {o: n for n in exported.graph.node for o in n.output}
    source = {t.name: numpy_helper.to_array(t) for t in engine.model.graph_proto.graph.initializer}
    for name, bias in (("fc1", "b1"), ("fc2", "b2")):
        rec = result.layers[name].bias
        assert rec is not None, name
        dq = by_out[rec.feeds]
        codes, scale = inits[dq.input[0]], inits[dq.input[1]].astype(np.float64)
        assert codes.dtype == np.int32 and codes.shape == source[bias].shape
        np.testing.assert_array_equal(codes, np.rint(source[bias].astype(np.float64) / scale))
