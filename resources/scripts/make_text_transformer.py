"""Text sample: a tiny transformer encoder classifying generated sentences by topic.

Sentences come from templates over topic vocabularies (sport, weather, food,
technology, music) with shared function words, random distractor words from
other topics and word dropout, so the task needs the context, not one
keyword. Tokens are lower-case words from a fixed vocabulary (shipped in
meta.json); id 0 pads, 1 is unknown; sequences have 16 tokens.

Attention is written out with MatMul and Softmax so the ONNX graph has the
plain ops an encoder has after export (Gather, MatMul, Add, Softmax,
LayerNormalization), not a fused attention kernel.

Rebuild: /path/to/venv-with-torch/bin/python resources/scripts/make_text_transformer.py
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from sample_common import seed_everything, train, write_sample
from torch import nn

SEQ, DIM, HEADS, FFN, LAYERS = 16, 64, 4, 128, 2
TOPICS = {
    "sport": [
        "match",
        "team",
        "goal",
        "coach",
        "league",
        "players",
        "score",
        "referee",
        "stadium",
        "season",
        "win",
        "lost",
        "final",
        "champion",
        "tournament",
        "ball",
        "race",
        "runner",
    ],
    "weather": [
        "rain",
        "sun",
        "storm",
        "cloud",
        "forecast",
        "wind",
        "snow",
        "cold",
        "warm",
        "temperature",
        "sky",
        "thunder",
        "fog",
        "humid",
        "breeze",
        "frost",
        "heat",
    ],
    "food": [
        "recipe",
        "dinner",
        "bread",
        "cheese",
        "soup",
        "kitchen",
        "chef",
        "taste",
        "sauce",
        "oven",
        "salad",
        "spicy",
        "fruit",
        "dessert",
        "breakfast",
        "menu",
        "flavor",
    ],
    "technology": [
        "software",
        "computer",
        "phone",
        "chip",
        "network",
        "code",
        "app",
        "battery",
        "screen",
        "data",
        "cloud",
        "server",
        "update",
        "robot",
        "laptop",
        "internet",
    ],
    "music": [
        "song",
        "album",
        "band",
        "concert",
        "guitar",
        "singer",
        "melody",
        "drums",
        "piano",
        "tour",
        "stage",
        "chorus",
        "lyrics",
        "rhythm",
        "orchestra",
        "record",
        "jazz",
    ],
}
FILLER = [
    "the",
    "a",
    "an",
    "this",
    "that",
    "my",
    "our",
    "their",
    "today",
    "yesterday",
    "tomorrow",
    "was",
    "is",
    "will",
    "be",
    "very",
    "really",
    "quite",
    "new",
    "old",
    "big",
    "small",
    "good",
    "bad",
    "great",
    "terrible",
    "and",
    "but",
    "with",
    "about",
    "after",
    "before",
    "at",
    "in",
    "on",
    "for",
    "of",
    "everyone",
    "people",
    "we",
    "they",
    "i",
    "you",
    "it",
]
TEMPLATES = [
    "{f} {t} {f} {t}",
    "{f} {f} {t} {f} {t} {f} {t}",
    "{t} {f} {f} {t} {f} {d} {t}",
    "{f} {t} {d} {f} {t} {f} {f} {t}",
    "{f} {d} {t} {f} {f} {d} {t} {f} {t}",
    "{t} {t} {f} {d} {f} {t}",
]
N_TRAIN, N_TEST = 6000, 400


def vocabulary() -> list[str]:
    words = sorted({w for ws in TOPICS.values() for w in ws} | set(FILLER))
    return ["<pad>", "<unk>", *words]


def sentence(topic: str, rng: np.random.Generator) -> list[str]:
    others = [w for k, ws in TOPICS.items() if k != topic for w in ws]
    words = []
    for slot in rng.choice(TEMPLATES).split():
        if slot == "{t}":
            words.append(rng.choice(TOPICS[topic]))
        elif slot == "{d}":  # a distractor from another topic
            words.append(rng.choice(others))
        else:
            words.append(rng.choice(FILLER))
    keep = [w for w in words if rng.random() > 0.15] or words[:1]  # word dropout
    if rng.random() < 0.3:
        keep.insert(int(rng.integers(0, len(keep) + 1)), rng.choice(others))
    return keep


def encode(words: list[str], index: dict[str, int]) -> list[int]:
    ids = [index.get(w, 1) for w in words][:SEQ]
    return ids + [0] * (SEQ - len(ids))


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(DIM, DIM) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(DIM), nn.LayerNorm(DIM)
        self.ff1, self.ff2 = nn.Linear(DIM, FFN), nn.Linear(FFN, DIM)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        hd = DIM // HEADS

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, n, HEADS, hd).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + bias, dim=-1)
        h = (att @ v).transpose(1, 2).reshape(b, n, DIM)
        x = self.ln1(x + self.o(h))
        return self.ln2(x + self.ff2(torch.relu(self.ff1(x))))


class TextClassifier(nn.Module):
    def __init__(self, vocab: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, DIM)
        self.pos = nn.Parameter(torch.randn(1, SEQ, DIM) * 0.02)
        self.layers = nn.ModuleList(Encoder() for _ in range(LAYERS))
        self.head = nn.Linear(DIM, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != 0).float()  # [B, L]
        bias = (1.0 - mask)[:, None, None, :] * -1e4  # padding keys get no attention
        x = self.embed(ids) + self.pos
        for layer in self.layers:
            x = layer(x, bias)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return self.head(pooled)


def main() -> None:
    started = time.time()
    seed_everything(0)
    rng = np.random.default_rng(0)
    vocab = vocabulary()
    index = {w: i for i, w in enumerate(vocab)}
    topics = list(TOPICS)
    y = rng.integers(0, len(topics), N_TRAIN + N_TEST)
    x = np.array([encode(sentence(topics[t], rng), index) for t in y], np.int64)
    model = TextClassifier(len(vocab), len(topics))
    train(model, x[:N_TRAIN], y[:N_TRAIN], epochs=25, lr=2e-3, batch=64)
    write_sample(
        "text_transformer",
        model,
        x[N_TRAIN:],
        y[N_TRAIN:].astype(np.int64),
        "token_ids",
        {
            "title": "Topic classifier (transformer encoder)",
            "domain": "text",
            "description": f"{LAYERS}-layer transformer encoder ({DIM} wide, {HEADS} heads, "
            "attention as MatMul/Softmax, LayerNorm, feed-forward) over word embeddings, "
            "mean-pooled, classifying generated sentences into 5 topics.",
            "classes": topics,
            "layout": f"[batch, {SEQ}] int64 token ids (0 = padding, 1 = unknown)",
            "preprocessing": "lower-case, split on spaces, look up in vocabulary",
            "vocabulary": vocab,
            "seed": 0,
        },
        started,
    )


if __name__ == "__main__":
    main()
