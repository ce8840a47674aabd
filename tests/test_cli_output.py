"""The command line's formatting (``tinydj.cli.output``): pure functions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tinydj.admin import QueueStats
from tinydj.cli.output import ERROR_WIDTH, duration, shorten, stats_json, stats_lines, table


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ""),
        ("", ""),
        ("ValueError: short", "ValueError: short"),
        ("\n\nKeyError: 'x'\nTraceback ...", "KeyError: 'x'"),
        ("x" * ERROR_WIDTH, "x" * ERROR_WIDTH),
        # cut at the last space that fits, never inside a word
        (
            "ConnectionError: the payment gateway refused the connection after three retries",
            "ConnectionError: the payment gateway refused the...",
        ),
        # punctuation before the cut is dropped
        (
            "RuntimeError: a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r, s, t, u, v",
            "RuntimeError: a, b, c, d, e, f, g, h, i, j, k, l, m, n...",
        ),
        # one long word: cut inside it, as there is no boundary
        ("E: " + "y" * 100, "E: " + "y" * (ERROR_WIDTH - 6) + "..."),
    ],
)
def test_shorten(text: str | None, expected: str) -> None:
    assert shorten(text) == expected
    assert len(shorten(text)) <= ERROR_WIDTH


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.9, "0s"),
        (59, "59s"),
        (60, "1m00s"),
        (125, "2m05s"),
        (3600, "1h00m"),
        (3 * 3600 + 62, "3h01m"),
        (86400 * 3 + 4 * 3600 + 59, "3d04h"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(timedelta(seconds=seconds)) == text


def test_table_aligns_numbers_right_and_text_left() -> None:
    assert table(["ID", "NAME", "N"], [["1", "a", "10"], ["100", "bbbb", "2"]], right=1) == [
        " ID  NAME   N",
        "  1  a     10",
        "100  bbbb   2",
    ]


def test_stats_lines_of_an_empty_table() -> None:
    assert stats_lines([]) == [
        "QUEUE  READY  SCHEDULED  RUNNING  FAILED  RECURRING  LAG",
        "total      0          0        0       0          0  -",
    ]
    assert stats_json([])["total"] == {
        "ready": 0,
        "scheduled": 0,
        "running": 0,
        "failed": 0,
        "recurring": 0,
        "lag_seconds": None,
    }


def test_total_lag_is_the_worst_queue() -> None:
    counts = {"ready": 2, "scheduled": 0, "running": 0, "failed": 0, "recurring": 0}
    stats = [
        QueueStats("a", counts, timedelta(seconds=5)),
        QueueStats("b", counts, timedelta(minutes=3)),
        QueueStats("c", counts, timedelta(0)),
    ]
    assert stats_lines(stats)[1:] == [
        "a          2          0        0       0          0  5s",
        "b          2          0        0       0          0  3m00s",
        "c          2          0        0       0          0  0s",
        "total      6          0        0       0          0  3m00s",
    ]
