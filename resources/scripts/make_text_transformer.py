"""Build the ``text_transformer`` sample: a tiny transformer encoder for review sentiment.

Run from the repository root with the build-time venv::

    /work/torchvenv/bin/python resources/scripts/make_text_transformer.py

Writes ``resources/samples/text_transformer/{model.onnx,data.npz,meta.json,vocab.json,
texts.json}``. The sentences come from the generator below (five product/place domains,
negation, intensifiers, contrast and concession clauses), so nothing is downloaded.

Labels follow fixed rules, which the model has to learn from examples:

* a clause scores +1 / 0 / -1 from its adjective or verb; a negation flips positive to
  negative, neutral to negative and negative to neutral ("not bad" is not praise);
* "A and B" takes the sign of the sum; "A but B" / "A, however B" / "although A, B" take
  B; "A, although B" takes A; a factual clause scores 0.
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, seed_everything

SEED = 0
CLASSES = ["negative", "neutral", "positive"]
MAX_LEN = 32
N_TRAIN_PER_CLASS = 4000
N_TEST_PER_CLASS = 100
EPOCHS = 30
D_MODEL, N_HEADS, D_FF, N_LAYERS = 64, 4, 128, 2
PAD, UNK = "[PAD]", "[UNK]"
TOKEN_RE = re.compile(r"[a-z']+|[.,!?]")

DOMAINS: dict[str, tuple[list[str], list[str], str]] = {
    # name: (aspects, what the whole thing is called, the "again" verb phrase)
    "restaurant": (["food", "service", "staff", "pasta", "pizza", "soup", "dessert", "waiter",
                    "menu", "coffee", "wine", "portions", "prices", "atmosphere", "music"],
                   ["restaurant", "place", "cafe", "bistro"], "eat there"),
    "movie": (["plot", "acting", "soundtrack", "ending", "script", "dialogue", "cast",
               "effects", "pacing", "lead actor", "villain"],
              ["movie", "film", "show", "series"], "watch it"),
    "hotel": (["room", "bed", "breakfast", "location", "pool", "reception", "view", "shower",
               "wifi", "bathroom", "beds"],
              ["hotel", "resort", "hostel", "apartment"], "stay there"),
    "phone": (["battery", "screen", "camera", "speaker", "charger", "keyboard", "software",
               "case", "microphone", "sound quality", "buttons"],
              ["phone", "tablet", "laptop", "headset"], "buy it"),
    "book": (["story", "characters", "writing", "chapters", "ending", "translation", "cover",
              "plot twist", "narrator"],
             ["book", "novel", "memoir", "textbook"], "read it"),
}
POS_ADJ = ["good", "great", "excellent", "wonderful", "amazing", "fantastic", "lovely",
           "superb", "brilliant", "delightful", "impressive", "pleasant", "perfect",
           "outstanding", "enjoyable", "nice", "charming"]
NEG_ADJ = ["bad", "terrible", "awful", "horrible", "poor", "disappointing", "dreadful",
           "boring", "annoying", "useless", "unpleasant", "weak", "awkward", "frustrating",
           "lousy", "mediocre"]
NEU_ADJ = ["okay", "average", "ordinary", "standard", "typical", "acceptable", "unremarkable"]
INTENSIFIERS = ["very", "really", "extremely", "quite", "truly", "incredibly", "so", "pretty",
                "rather", "absolutely", "totally"]
POS_VERBS = ["loved", "liked", "enjoyed", "adored", "appreciated"]
NEG_VERBS = ["hated", "disliked", "regretted", "despised"]
POS_VERBS_BASE = ["love", "like", "enjoy", "appreciate"]
NEG_VERBS_BASE = ["hate", "dislike", "mind"]
PREFIXES = ["", "", "", "honestly", "overall", "to be honest", "in my opinion", "i think",
            "i felt that", "well", "frankly", "all in all", "sadly", "surprisingly"]
SUFFIXES = ["", "", ".", ".", "!", "overall", "to be honest", "i guess"]
TIMES = ["yesterday", "last week", "on monday", "on friday", "in june", "in march",
         "last year", "this morning", "on the weekend", "twice"]
DETS = ["the", "the", "this", "that", "my", "our"]
PLURAL_DETS = ["the", "the", "these", "those", "my", "our"]


def clause_opinion(rng: random.Random, aspects: list[str], want: int) -> str:
    """A copula clause ("the camera was not very good") whose score is ``want``."""
    aspect = rng.choice(aspects)
    plural = aspect.endswith("s")
    past = rng.random() < 0.6
    be = ("were" if plural else "was") if past else ("are" if plural else "is")
    det = rng.choice(PLURAL_DETS if plural else DETS)
    negated = rng.random() < 0.35
    # score after negation: pos -> -1, neu -> -1, neg -> 0
    if negated:
        base = {-1: rng.choice(["pos", "neu"]), 0: "neg"}.get(want)
        if base is None:  # +1 cannot come from a negation
            negated, base = False, "pos"
    else:
        base = {1: "pos", 0: "neu", -1: "neg"}[want]
    adj = rng.choice({"pos": POS_ADJ, "neg": NEG_ADJ, "neu": NEU_ADJ}[base])
    inten = rng.choice(INTENSIFIERS) + " " if rng.random() < 0.4 else ""
    if negated:
        neg = rng.choice(["not", "never", "not", "n't"])
        head = f"{be}n't" if neg == "n't" else f"{be} {neg}"
        return f"{det} {aspect} {head} {inten}{adj}"
    return f"{det} {aspect} {be} {inten}{adj}"


def clause_verb(rng: random.Random, aspects: list[str], things: list[str], again: str,
                want: int) -> str:
    """"i loved the pool", "i did not enjoy the plot", "i would never buy it again"..."""
    target = f"the {rng.choice(aspects)}" if rng.random() < 0.7 else f"this {rng.choice(things)}"
    if rng.random() < 0.3 and want != 0:
        adv = rng.choice(["", "definitely ", "happily ", "gladly "]) if want > 0 else ""
        neg = "" if want > 0 else rng.choice(["not ", "never ", "n't "])
        if neg == "n't ":
            return f"i wouldn't {again} again"
        if rng.random() < 0.5:
            return f"i would {adv}{neg}{again} again"
        return f"i would {adv}{neg}recommend {target}"
    if want == 1:
        return f"i {rng.choice(['really ', 'truly ', ''])}{rng.choice(POS_VERBS)} {target}"
    if want == -1:
        if rng.random() < 0.5:
            return f"i {rng.choice(NEG_VERBS)} {target}"
        did = rng.choice(["did not", "didn't", "do not", "don't"])
        return f"i {did} {rng.choice(POS_VERBS_BASE)} {target}"
    did = rng.choice(["did not", "didn't", "do not", "don't"])
    return f"i {did} {rng.choice(NEG_VERBS_BASE)} {target}"


def clause_fact(rng: random.Random, aspects: list[str], things: list[str]) -> str:
    """A neutral, factual clause."""
    thing = rng.choice(things)
    return rng.choice([
        f"we tried this {thing} {rng.choice(TIMES)}",
        f"i went to the {thing} {rng.choice(TIMES)}",
        f"the {rng.choice(aspects)} came {rng.choice(TIMES)}",
        f"my friend told me about this {thing}",
        f"i checked the {rng.choice(aspects)} {rng.choice(TIMES)}",
        f"the {thing} is near the station",
        f"we paid by card {rng.choice(TIMES)}",
    ])


def clause(rng: random.Random, domain: str, want: int) -> str:
    aspects, things, again = DOMAINS[domain]
    r = rng.random()
    if want == 0 and r < 0.3:
        return clause_fact(rng, aspects, things)
    if r < 0.7:
        return clause_opinion(rng, aspects, want)
    return clause_verb(rng, aspects, things, again, want)


def sentence(rng: random.Random) -> tuple[str, int]:
    """One review sentence and its label index (0 negative, 1 neutral, 2 positive)."""
    domain = rng.choice(list(DOMAINS))
    kind = rng.random()
    if kind < 0.35:
        s = rng.choice([-1, 0, 1])
        body, label = clause(rng, domain, s), s
    elif kind < 0.6:  # sum rule
        s1, s2 = rng.choice([-1, 0, 1]), rng.choice([-1, 0, 1])
        joint = rng.choice([" and ", ", and ", " and also ", ", "])
        body, label = clause(rng, domain, s1) + joint + clause(rng, domain, s2), int(
            np.sign(s1 + s2))
    else:  # contrast / concession: opposite, non-zero scores
        s1 = rng.choice([-1, 1])
        s2 = -s1
        c1, c2 = clause(rng, domain, s1), clause(rng, domain, s2)
        form = rng.randrange(4)
        if form == 0:
            body, label = f"{c1} but {c2}", s2
        elif form == 1:
            body, label = f"{c1}, however {c2}", s2
        elif form == 2:
            body, label = f"although {c1}, {c2}", s2
        else:
            body, label = f"{c1}, although {c2}", s1
    pre, post = rng.choice(PREFIXES), rng.choice(SUFFIXES)
    text = " ".join(p for p in (pre + ("," if pre and rng.random() < 0.5 else ""), body, post)
                    if p)
    return text.replace(" .", ".").replace(" !", "!"), label + 1


def tokenize(text: str) -> list[str]:
    return TOKEN_RE.findall(text.lower())


def encode(texts: list[str], vocab: dict[str, int]) -> np.ndarray:
    ids = np.zeros((len(texts), MAX_LEN), np.int64)  # [PAD] is id 0
    for i, t in enumerate(texts):
        toks = [vocab.get(w, vocab[UNK]) for w in tokenize(t)]
        if len(toks) > MAX_LEN:
            raise ValueError(f"sentence longer than {MAX_LEN} tokens: {t!r}")
        ids[i, :len(toks)] = toks
    return ids


def make_split(rng: random.Random, per_class: int, labelled: dict[str, int]
               ) -> tuple[list[str], list[int]]:
    """``per_class`` new sentences per class.

    ``labelled`` (text -> label, updated in place) holds every sentence drawn so far, so
    splits never share a sentence and a rule that labels one text two ways is caught.
    """
    texts: list[str] = []
    labels: list[int] = []
    counts = [0] * len(CLASSES)
    while min(counts) < per_class:
        text, label = sentence(rng)
        if text in labelled:
            if labelled[text] != label:
                raise RuntimeError(f"{text!r} labelled both {labelled[text]} and {label}")
            continue
        labelled[text] = label
        if counts[label] >= per_class:
            continue
        texts.append(text)
        labels.append(label)
        counts[label] += 1
    return texts, labels


class Encoder(nn.Module):
    """Post-LN transformer encoder layer, attention spelled out as MatMul/Softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(D_MODEL, D_MODEL)
        self.k = nn.Linear(D_MODEL, D_MODEL)
        self.v = nn.Linear(D_MODEL, D_MODEL)
        self.o = nn.Linear(D_MODEL, D_MODEL)
        self.ln1 = nn.LayerNorm(D_MODEL)
        self.ff1 = nn.Linear(D_MODEL, D_FF)
        self.ff2 = nn.Linear(D_FF, D_MODEL)
        self.ln2 = nn.LayerNorm(D_MODEL)
        self.drop = nn.Dropout(0.1)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        # -1 for the batch keeps the exported Reshape shape constant and the batch dynamic.
        return x.reshape(-1, MAX_LEN, N_HEADS, D_MODEL // N_HEADS).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        q, k, v = self.heads(self.q(x)), self.heads(self.k(x)), self.heads(self.v(x))
        scores = q @ k.transpose(-1, -2) * (D_MODEL // N_HEADS) ** -0.5 + mask_bias
        att = torch.softmax(scores, dim=-1) @ v
        att = att.transpose(1, 2).reshape(-1, MAX_LEN, D_MODEL)
        x = self.ln1(x + self.drop(self.o(att)))
        return self.ln2(x + self.drop(self.ff2(torch.relu(self.ff1(x)))))


class TextClassifier(nn.Module):
    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, D_MODEL)
        self.pos = nn.Parameter(torch.randn(1, MAX_LEN, D_MODEL) * 0.02)
        self.layers = nn.ModuleList(Encoder() for _ in range(N_LAYERS))
        self.head = nn.Linear(D_MODEL, len(CLASSES))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        keep = (ids != 0).float()  # [PAD] is 0
        # Large negative (not -inf) so an all-pad row cannot turn into NaN.
        mask_bias = ((1.0 - keep) * -1e4)[:, None, None, :]
        x = self.embed(ids) + self.pos
        for layer in self.layers:
            x = layer(x, mask_bias)
        pooled = (x * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1.0)
        return self.head(pooled)


def main() -> None:
    seed_everything(SEED)
    t0 = time.perf_counter()
    rng = random.Random(SEED)
    labelled: dict[str, int] = {}
    train_texts, train_labels = make_split(rng, N_TRAIN_PER_CLASS, labelled)
    test_texts, test_labels = make_split(rng, N_TEST_PER_CLASS, labelled)
    words = sorted({w for t in train_texts for w in tokenize(t)})
    vocab = {w: i for i, w in enumerate([PAD, UNK, *words])}
    missing = {w for t in test_texts for w in tokenize(t)} - set(vocab)
    if missing:
        raise RuntimeError(f"evaluation words never seen in training: {sorted(missing)}")
    x_tr, x_te = encode(train_texts, vocab), encode(test_texts, vocab)
    y_tr, y_te = np.array(train_labels, np.int64), np.array(test_labels, np.int64)
    lengths = (x_tr != 0).sum(1)
    print(f"{len(vocab)} tokens, sentence length {lengths.min()}..{lengths.max()}",
          file=sys.stderr)

    model = TextClassifier(len(vocab))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS)
    gen = torch.Generator().manual_seed(SEED)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for k in range(0, len(xt), 64):
            idx = perm[k:k + 64]
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        if epoch % 5 == 4:  # progress display only: the last epoch is kept regardless
            model.eval()
            with torch.no_grad():
                acc = (model(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean()
            print(f"epoch {epoch + 1}: loss {total / len(xt):.4f} (held-out acc {acc:.3f})",
                  file=sys.stderr)
    train_s = time.perf_counter() - t0
    model.eval()

    tokens = [PAD, UNK, *words]
    meta = {
        "title": "Review sentiment (tiny transformer)",
        "domain": "text",
        "description": (
            f"A {N_LAYERS}-layer transformer encoder (d_model {D_MODEL}, {N_HEADS} heads, "
            f"FFN {D_FF}; token embedding Gather, learned positions, attention as "
            "MatMul/Softmax, LayerNormalization, masked mean pooling, Gemm classifier) "
            "classifying generated review sentences about restaurants, movies, hotels, "
            "phones and books as negative, neutral or positive. Labels depend on negation "
            "('not bad' is neutral), contrast ('A but B' follows B) and concession."
        ),
        "class_names": CLASSES,
        "input": {
            "layout": "[batch, tokens]",
            "preprocessing": (
                "lowercase, split with the regex [a-z']+|[.,!?], map words to ids with "
                f"vocab.json (a list; index = id; {PAD} = 0, {UNK} = 1), pad with 0 to "
                f"{MAX_LEN} tokens; padding is masked out of attention and pooling"
            ),
            "vocab_file": "vocab.json",
            "max_length": MAX_LEN,
            "texts_file": "texts.json",
        },
        "made_by": {
            "script": "resources/scripts/make_text_transformer.py",
            "seed": SEED,
            "data": (f"generated: {N_TRAIN_PER_CLASS} training and {N_TEST_PER_CLASS} "
                     "evaluation sentences per class, no evaluation sentence occurs in "
                     "training; rules in the script's docstring"),
            "training": (f"AdamW lr 1e-3, weight decay 1e-2, cosine schedule, {EPOCHS} epochs, "
                         "batch 64, dropout 0.1"),
            "train_samples": len(y_tr),
            "train_seconds": round(train_s, 1),
        },
    }
    extra = {
        "vocab.json": (json.dumps(tokens, indent=0) + "\n").encode(),
        "texts.json": (json.dumps(test_texts, indent=0) + "\n").encode(),
    }
    finish("text_transformer", model, "token_ids", x_te, y_te, meta, extra)


if __name__ == "__main__":
    main()
