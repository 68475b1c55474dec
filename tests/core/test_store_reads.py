"""Spilled reference values read back (engine/store.py): small ones by one positional read,
large ones through a memory map; both equal what was stored and are read-only."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bitlens.core.engine import store as store_mod
from bitlens.core.engine.store import ActivationStore


def test_spilled_values_read_back_exactly_small_and_large() -> None:
    rng = np.random.default_rng(0)
    values = {
        ("small", 0): rng.standard_normal((1, 256)).astype(np.float32),
        ("small", 1): rng.standard_normal((3, 5, 7)).astype(np.float16),
        ("ints", 0): rng.integers(-5, 5, (4, 9)).astype(np.int64),
        ("large", 0): rng.standard_normal((64, 1024)).astype(np.float32),  # 256 KiB
        ("empty", 0): np.zeros((0, 4), np.float32),
    }
    st = ActivationStore(0)  # everything spills
    for (name, i), v in values.items():
        st.put(name, i, v)
    assert st.spilled_bytes == sum(v.nbytes for v in values.values())
    assert values[("large", 0)].nbytes > store_mod.SMALL_READ >= values[("small", 0)].nbytes
    # two threads at once, as the sweep reads
    with ThreadPoolExecutor(2) as pool:
        got = dict(zip(values, pool.map(lambda k: st.get(*k), list(values)), strict=True))
    for key, v in values.items():
        assert got[key].dtype == v.dtype and got[key].shape == v.shape
        np.testing.assert_array_equal(got[key], v)
        if got[key].size:
            with pytest.raises(ValueError):
                got[key].reshape(-1)[0] = 1  # read-only
    st.close()
