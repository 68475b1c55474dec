"""The arena is given back after an evaluation only once the process grew by more than
the slack since the last time (engine/arena_release.py)."""

from __future__ import annotations

import pytest

from bitlens.core.engine import arena_release


def test_releases_once_grown_past_the_slack(monkeypatch) -> None:
    rss = [100]
    released: list[int] = []
    monkeypatch.setattr(arena_release, "resident_bytes", lambda: rss[0])
    monkeypatch.setattr(arena_release, "release_arena", lambda: released.append(rss[0]))
    r = arena_release.ArenaReleaser(slack=10)
    assert r.maybe_release()  # the first time: no floor yet
    rss[0] = 110
    assert not r.maybe_release()  # within the slack: the buffers stay for the next run
    rss[0] = 111
    assert r.maybe_release()
    assert released == [100, 111]
    assert r.floor == 111


def test_always_releases_where_the_rss_is_unknown(monkeypatch) -> None:
    released: list[bool] = []
    monkeypatch.setattr(arena_release, "resident_bytes", lambda: None)
    monkeypatch.setattr(arena_release, "release_arena", lambda: released.append(True))
    r = arena_release.ArenaReleaser(slack=1 << 40)
    assert r.maybe_release() and r.maybe_release()
    assert len(released) == 2


@pytest.mark.skipif(arena_release.resident_bytes() is None, reason="no /proc/self/statm")
def test_resident_bytes_reads_a_plausible_size() -> None:
    rss = arena_release.resident_bytes()
    assert rss is not None and 1 << 20 < rss < 1 << 40
