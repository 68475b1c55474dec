"""Inputs for the non-vision models the search is compared with W8A8 on, one dict per sample.

The same inputs as the real-model suite's (tests/real/more_feeds.py, feeds_text_speech.py,
each after its package's own preprocessing), split into one feed per sample.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

import numpy as np

from tests.real import feeds_text_speech, more_feeds, wheels
from tests.real.test_real_models import _ddddocr_feeds, _silero_feeds
from tests.real.vision_feeds import Feeds, batch1

_NUMBERED = re.compile(r"(.+)/(\d+)")


def per_sample(feeds: dict[str, np.ndarray], n: int) -> list[Feeds]:
    """``n`` samples from the suite's npz dict: numbered feeds ``NAME/i`` grouped by ``i``,
    or arrays with the samples along axis 0, one row each."""
    if not all(_NUMBERED.fullmatch(k) for k in feeds):
        return batch1(feeds, n)
    out: list[Feeds] = [{} for _ in range(n)]
    for key, value in feeds.items():
        m = _NUMBERED.fullmatch(key)
        assert m is not None
        out[int(m.group(2))][m.group(1)] = value
    return out


def _split(make: Callable[[int], dict[str, np.ndarray]], n: int) -> list[Feeds]:
    return per_sample(make(n), n)


def each(make: Callable[[int], dict[str, np.ndarray]]) -> Callable[[int], list[Feeds]]:
    """A suite feed maker (``n`` -> an npz dict, as tests/real/feeds_*.py make them) as one
    dict per sample."""
    return partial(_split, make)


def _file(wheel: wheels.Wheel, name: str):
    return wheels.model_files(wheel)[name]


def magika(n: int) -> list[Feeds]:
    return per_sample(more_feeds.magika(n), n)


def wakeword_embedding(n: int) -> list[Feeds]:
    mel = _file(wheels.OPENWAKEWORD, "melspectrogram.onnx")
    return per_sample(more_feeds.wakeword_embedding(mel, n), n)


def romanizer_encoder(n: int) -> list[Feeds]:
    return per_sample(more_feeds.romanizer_encoder(n), n)


def romanizer_decoder(n: int) -> list[Feeds]:
    encoder = _file(wheels.NAME_ROMANIZER, "encoder.onnx")
    return per_sample(more_feeds.romanizer_decoder(encoder, n), n)


def khmersm(n: int) -> list[Feeds]:
    config = _file(wheels.KHMERSM, "model.onnx").parent / "config.json"
    return per_sample(feeds_text_speech.khmersm(config, n), n)


def fsmn_vad(n: int) -> list[Feeds]:
    # its arrays stack whole feeds (speech [1, frames, 400], caches [1, 128, 19, 1])
    return [{k: v[i] for k, v in feeds_text_speech.fsmn_vad(n).items()} for i in range(n)]


def minilm(n: int) -> list[Feeds]:
    return per_sample(feeds_text_speech.minilm(n), n)


def ddddocr(n: int) -> list[Feeds]:
    return per_sample(_ddddocr_feeds(n), n)


def basic_pitch(n: int) -> list[Feeds]:
    # windows of 43844 samples stacked on axis 0: one window per sample
    return per_sample(feeds_text_speech.basic_pitch(n), n)


def aecmos(n: int) -> list[Feeds]:
    # numbered feeds (its GRU state fixes the batch at 1; clips of different lengths)
    return per_sample(feeds_text_speech.aecmos(n), n)


def captcha(n: int) -> list[Feeds]:
    return per_sample(more_feeds.captcha(n), n)


def silero_vad(n: int) -> list[Feeds]:
    # Silero VAD v5: one 576-sample window, its state and the rate per sample (rate a scalar)
    return [{k: np.asarray(v[i]) for k, v in _silero_feeds(n).items()} for i in range(n)]
