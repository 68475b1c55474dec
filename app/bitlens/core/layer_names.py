"""Short layer names for narrow places: the segments that tell layers apart.

Exporters write node names as scope paths, and on a real model every name starts the
same way: paraphrase-MiniLM-L3-v2's are ``/model/model.0/auto_model/encoder/layer.0/
attention/self/query/MatMul``, FunASR's FSMN VAD's ``/encoder/fsmn.0/linear/linear/MatMul``.
Elided in the middle to a 16-em column they all read ``/model/mod…ery/MatMul``. What tells
them apart (the block index, query/key/value, attention or feed-forward) is in the middle.

So, the way editors title tabs of files with the same name: each name is cut to its
shortest trailing run of path segments that no other name ends with (the shared prefix
goes, ``layer.0`` stays where it is needed). Then segments that a third or more of the
names carry (``self``, ``dense``) are dropped where every name stays distinct and keeps a
word besides its block index and its own node name; segments with digits (block indices)
and the last segment (the node's own name) always stay. Full names stay in tooltips,
copy and find: this is for display only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

SEP = "/"


def listed(names: Sequence[str], most: int = 3, *, quoted: bool = True) -> str:
    """Names in a one-line message, at most ``most`` of them: ``'a', 'b', 'c' and 4 more``
    (``quoted=False``: ``a, b, c and 4 more``). The full list belongs in a report, not a line."""
    shown = ", ".join(repr(n) if quoted else n for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _split(name: str) -> list[str]:
    parts = [p for p in name.split(SEP) if p]
    return parts or [name]


def _suffixes(paths: list[list[str]]) -> list[list[str]]:
    """Each path's shortest tail that is no other path's tail (whole paths when none is)."""
    tails = Counter(tuple(p[-k:]) for p in paths for k in range(1, len(p) + 1))
    out = []
    for p in paths:
        k = next((k for k in range(1, len(p) + 1) if tails[tuple(p[-k:])] == 1), len(p))
        out.append(p[-k:])
    return out


def _has_word(path: list[str]) -> bool:
    """A segment besides the last that is not a block index (``layer.0``, ``fsmn.3``)."""
    return any(not any(ch.isdigit() for ch in seg) for seg in path[:-1])


def short_names(names: Sequence[str]) -> dict[str, str]:
    """Per name, a shorter display name; names that differ in their segments stay distinct.

    Names without path segments are returned as they are. The result is never empty and
    always ends with the name's last segment.
    """
    unique = list(dict.fromkeys(names))
    paths = _suffixes([_split(n) for n in unique])
    distinct = len({tuple(p) for p in paths})
    # "linear/linear", "attention/attention": a repeated segment says nothing twice.
    once = [[s for i, s in enumerate(p) if i == 0 or s != p[i - 1]] for p in paths]
    if len({tuple(p) for p in once}) == distinct:
        paths = once
    counts = Counter(seg for p in paths for seg in set(p[:-1]))
    common = sorted(
        (
            s
            for s, c in counts.items()
            if 3 * c >= len(unique) and not any(ch.isdigit() for ch in s)
        ),
        key=lambda s: (-counts[s], -len(s), s),
    )
    for seg in common:
        trial = [[s for s in p[:-1] if s != seg] + [p[-1]] for p in paths]
        keeps_words = all(
            _has_word(t) or not _has_word(p) for p, t in zip(paths, trial, strict=True)
        )
        if keeps_words and len({tuple(t) for t in trial}) == distinct:
            paths = trial
    return {n: (SEP.join(p) if SEP in n else n) for n, p in zip(unique, paths, strict=True)}
