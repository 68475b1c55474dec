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


def test_keeps_the_buffers_of_work_that_grows_back_to_where_it_was_released(monkeypatch) -> None:
    # A re-evaluation from the first layer grows the RSS by more than the slack (its run's
    # buffers, fetched outputs and local runs), the release drops it, and the next one grows
    # to the same place: releasing there again made every run fault all its buffers in
    # (generated CRNN: ~25k page faults and a quarter of a whole-graph re-evaluation's CPU).
    rss = [100]
    released: list[int] = []

    def release() -> None:
        released.append(rss[0])
        rss[0] = 60  # what the arena gave back

    monkeypatch.setattr(arena_release, "resident_bytes", lambda: rss[0])
    monkeypatch.setattr(arena_release, "release_arena", release)
    r = arena_release.ArenaReleaser(slack=40)
    assert r.maybe_release() and r.reached is None  # the first time: no floor yet
    rss[0] = 200  # the work grew past floor 60 + slack 40
    assert r.maybe_release() and r.reached == 200 and r.floor == 60
    for _ in range(3):  # the same work again: back to what it reached, its buffers kept
        rss[0] = 200 + 40 // arena_release.REACHED_PART
        assert not r.maybe_release()
    rss[0] = 201 + 40 // arena_release.REACHED_PART  # grown beyond it: given back
    assert r.maybe_release()
    assert released == [100, 200, 211]
