"""The option validators (``tinydj.options``) and password masking (``tinydj.redact``)."""

from __future__ import annotations

import math

import pytest

from tinydj import options
from tinydj.redact import mask


@pytest.mark.parametrize("value", [1, 0.5, 10**7, options.MAX_SECONDS])
def test_durations_in_range_are_accepted(value: float) -> None:
    assert options.timeout(value) == float(value)
    assert options.lock_timeout(value) == float(value)


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, 10**9])
def test_durations_out_of_range_name_the_option_and_value(value: float) -> None:
    with pytest.raises(ValueError, match=r"timeout must be .* not "):
        options.timeout(value)


@pytest.mark.parametrize("value", ["10", True, None])
def test_durations_of_another_type_are_type_errors(value: object) -> None:
    with pytest.raises(TypeError, match="poll_interval"):
        options.poll_interval(value)


def test_whole_numbers() -> None:
    assert options.threads(4) == 4
    with pytest.raises(ValueError, match="threads must be an int >= 1, not 0"):
        options.threads(0)
    with pytest.raises(TypeError, match="batch_size"):
        options.batch_size(2.0)
    with pytest.raises(ValueError, match="max_attempts must be a positive int"):
        options.max_attempts(True)


def test_queues_and_priority() -> None:
    assert options.queues("mail") == ["mail"]
    assert options.queues(None) is None
    with pytest.raises(ValueError, match="queues must be non-empty strings"):
        options.queues(["ok", ""])
    with pytest.raises(ValueError, match="queue must be a non-empty string"):
        options.queue("")
    with pytest.raises(TypeError, match="priority must be an int"):
        options.priority("5")


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("mysql://root:wrong@host/db", "mysql://root:***@host/db"),
        ("postgresql://u:p%40ss@h:5432/d?x=1", "postgresql://u:***@h:5432/d?x=1"),
        (
            "cannot connect to postgresql://u:s3cret@h/d: refused",
            "cannot connect to postgresql://u:***@h/d: refused",
        ),
        ("host=h password=s3cret dbname=d", "host=h password=*** dbname=d"),
        ("{'password': 's3cret', 'host': 'h'}", "{'password': '***', 'host': 'h'}"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("sqlite:///tmp/a:b.db", "sqlite:///tmp/a:b.db"),
    ],
)
def test_mask_hides_passwords_only(text: str, masked: str) -> None:
    assert mask(text) == masked
