"""The note on a layer that shares its weights lists the OTHER readers: on oskut-ws (21
MatMuls of a Keras TimeDistributed Dense reading one weight) ``bitlens sweep`` said
"MatMul_8 shares its weights with 16 other layer(s) (MatMul_8, MatMul_7, ...)"."""

from __future__ import annotations

from bitlens.core.shared_weights import group_note


def test_the_note_lists_the_other_readers_not_the_layer_itself() -> None:
    note = group_note("cell_1", ("cell_0", "cell_1", "cell_2"))
    assert note.startswith("cell_1 shares its weights with 2 other layer(s) (cell_0, cell_2):")


def test_a_long_list_is_cut_after_four_others() -> None:
    group = tuple(f"m_{i}" for i in range(7))
    assert "(m_1, m_2, m_3, m_4 and 2 more)" in group_note("m_0", group)
