"""Layer names in the text tables: names too long for a column are shown shortened.

tf2onnx names a node after every TensorFlow op fused into it, joined by ``;``: Spotify's
basic-pitch (``nmp.onnx``) has a Conv named in 362 characters
(``model_1/re_lu_3/Relu;model_1/re_lu_3/Relu;model_1/batch_normalization_3/...``), which
pushed every number of ``bitlens inspect`` past the edge of any terminal. Such names are
shown by the part that tells them apart (core/layer_names.py, as the window's Layer column
does); ``--json`` keeps the full names, and ``--pin`` takes either form.
"""

from __future__ import annotations

from collections.abc import Sequence

from bitlens.core.layer_names import short_names
from bitlens.core.model.types import ModelInfo

LONG = 60  # characters: a name longer than this is shown shortened


def shown_names(names: Sequence[str], among: Sequence[str] = ()) -> dict[str, str]:
    """Per name, what a table shows: the name itself, or its short form when it is long
    (kept in full if shortening would make two shown names equal).

    ``among``: every layer name the table's rows are drawn from (a sweep's top rows are
    a few of all its entries). Names are shortened against all of them, so that a short
    name is the one ``--pin`` and the other tables take: mk8dx-table-reader's
    bidirectional LSTM has a ``.../forward_lstm_1/while/lstm_cell_1/MatMul_1`` and a
    ``.../backward_...`` one, and a sweep whose top rows held only one showed it as
    ``MatMul_1``, which names neither."""
    pool = list(dict.fromkeys([*among, *names]))
    if all(len(n) <= LONG for n in pool):
        return {n: n for n in names}
    short = short_names(pool)
    shown = {n: short[n] if len(n) > LONG else n for n in pool}
    if len(set(shown.values())) < len(shown):
        return {n: n for n in names}
    return {n: shown[n] for n in names}


def shortened_note(shown: dict[str, str]) -> str | None:
    """One line under a table that shortened names, else None."""
    n = sum(1 for name, s in shown.items() if s != name)
    if not n:
        return None
    return (
        f"note: {n} layer name{'s' if n > 1 else ''} longer than {LONG} characters "
        "shown by the part that tells them apart; --json prints them in full"
    )


def resolve_layer(name: str, info: ModelInfo) -> str | None:
    """The full layer name for a full or shortened one (as a table shows it), else None."""
    if name in info.layer_index:
        return name
    matches = [full for full, short in info.short_names.items() if short == name]
    return matches[0] if len(matches) == 1 else None
