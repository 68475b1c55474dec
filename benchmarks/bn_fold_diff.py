"""How far the BN-folded float model (what Bitlens loads) is from the file's own.

Bitlens folds each BatchNormalization after a Conv into the Conv when it loads a model
(bitlens.core.model.bn_fold); the folded float model is then the reference every
error is measured against. This runs both on the same inputs in ONNX Runtime with graph
optimizations off (so ORT folds nothing itself) and with its defaults, and prints the
largest output difference, absolute and relative to the output's range.

Run: ``python benchmarks/bn_fold_diff.py MODEL.onnx inputs.npz`` (inputs as
``benchmarks/real_inputs.py`` writes them: ``NAME/i`` keys).
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort

from bitlens.core.model.loader import load_model


def _session(model: str | bytes, optimize: bool) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3  # the file's own unused initializers are not news here
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("data", help=".npz with NAME/i keys, one feed per i")
    args = ap.parse_args()
    loaded = load_model(args.model)
    print(f"{args.model}: {loaded.bn_folded} BatchNormalization(s) folded")
    data = np.load(args.data)
    feeds: dict[int, dict[str, np.ndarray]] = {}
    for key in data.files:
        name, _, i = key.rpartition("/")
        feeds.setdefault(int(i), {})[name] = data[key]
    folded_bytes = loaded.proto.SerializeToString()
    for optimize in (False, True):
        a, b = _session(args.model, optimize), _session(folded_bytes, optimize)
        worst_abs = worst_rel = 0.0
        for feed in feeds.values():
            for x, y in zip(a.run(None, feed), b.run(None, feed), strict=True):
                x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
                d = float(np.abs(x64 - y64).max()) if x64.size else 0.0
                span = float(np.abs(x64).max()) if x64.size else 0.0
                worst_abs = max(worst_abs, d)
                worst_rel = max(worst_rel, d / span if span else 0.0)
        mode = "ORT default optimizations" if optimize else "ORT optimizations off"
        print(
            f"  {mode}: {len(feeds)} inputs, max |file - folded| = {worst_abs:.3g} "
            f"({worst_rel:.3g} of the output's largest magnitude)"
        )


if __name__ == "__main__":
    main()
