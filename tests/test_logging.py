"""The log format: priority prefixes only on the journal's own stream, one line an event."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from ringbearer import _logging
from ringbearer._logging import fields
from ringbearer._secrets import Secret

log = logging.getLogger("ringbearer.test")
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d "


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """setup() rewires the package's logger; put it back for the tests that follow."""
    root = logging.getLogger("ringbearer")
    saved = root.handlers[:], root.level, root.propagate
    yield
    root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]


def journal_of(stream: TextIO) -> dict[str, str]:
    """The environment systemd gives a service whose stderr is ``stream``."""
    found = os.fstat(stream.fileno())
    return {"JOURNAL_STREAM": f"{found.st_dev}:{found.st_ino}"}


def lines_of(path: Path, stream: TextIO) -> list[str]:
    stream.flush()
    return path.read_text().splitlines()


def test_lines_carry_the_priority_prefix_when_stderr_is_the_journal_stream(
    tmp_path: Path,
) -> None:
    """Each level gets its sd-daemon <N> prefix, and no timestamp, on the named stream."""
    path = tmp_path / "journal"
    with path.open("w") as stream:
        _logging.setup("debug", stream=stream, environ=journal_of(stream))
        log.debug("d")
        log.info("i")
        log.warning("w")
        log.error("e")
        log.critical("c")
        lines = lines_of(path, stream)
    assert lines == [
        "<7>debug ringbearer.test d",
        "<6>info ringbearer.test i",
        "<4>warning ringbearer.test w",
        "<3>error ringbearer.test e",
        "<2>critical ringbearer.test c",
    ]


@pytest.mark.parametrize("variable", ["other file", "unset", "not-a-device:x", "12345"])
def test_no_prefix_when_stderr_is_not_the_journal_stream(tmp_path: Path, variable: str) -> None:
    """A stderr redirected away from the journal gets timestamped lines, never <N> prefixes."""
    other = tmp_path / "other"
    other.touch()
    environ = {
        "other file": {"JOURNAL_STREAM": "{}:{}".format(*_dev_ino(other))},
        "unset": {},
    }.get(variable, {"JOURNAL_STREAM": variable})
    path = tmp_path / "redirected"
    with path.open("w") as stream:
        _logging.setup("info", stream=stream, environ=environ)
        log.warning("w")
        (line,) = lines_of(path, stream)
    assert re.fullmatch(TIMESTAMP + "warning ringbearer.test w", line), line


def _dev_ino(path: Path) -> tuple[int, int]:
    found = path.stat()
    return found.st_dev, found.st_ino


def test_a_stream_with_no_file_behind_it_gets_no_prefix() -> None:
    """A stream with no descriptor (a test's capture, say) is never taken for the journal."""
    stream = io.StringIO()
    _logging.setup("info", stream=stream, environ={"JOURNAL_STREAM": "1:1"})
    log.info("i")
    assert re.fullmatch(TIMESTAMP + "info ringbearer.test i\n", stream.getvalue())


def test_one_event_is_one_line_even_with_newlines_and_tracebacks(tmp_path: Path) -> None:
    """Newlines in the message, a field or a traceback are escaped: one event, one line."""
    path = tmp_path / "journal"
    with path.open("w") as stream:
        _logging.setup("info", stream=stream, environ=journal_of(stream))
        log.warning("first\nsecond", extra=fields(body="a\nb"))
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            log.exception("failed")
        lines = lines_of(path, stream)
    assert len(lines) == 2 and all(line.startswith(("<4>", "<3>")) for line in lines)
    assert lines[0] == '<4>warning ringbearer.test "first\\nsecond" body="a\\nb"'
    assert lines[1].startswith('<3>error ringbearer.test failed exc="Traceback')
    assert "ValueError: bad\\nvalue" in lines[1]


def test_fields_are_key_value_pairs_quoted_when_needed() -> None:
    """Fields follow the message as key=value, quoted (and escaped) when they hold spaces."""
    stream = io.StringIO()
    _logging.setup("info", stream=stream, environ={})
    log.info(
        "delivered",
        extra=fields(target="email", count=3, reason='HTTP 429: "slow"', empty="", eq="a=b"),
    )
    line = stream.getvalue().rstrip("\n")
    assert line.split(" ", 1)[1] == (
        'info ringbearer.test delivered target=email count=3 reason="HTTP 429: \\"slow\\"" '
        'empty="" eq="a=b"'
    )


def test_secrets_never_reach_the_log() -> None:
    """A Secret in a message or a field is written redacted."""
    stream = io.StringIO()
    _logging.setup("info", stream=stream, environ={})
    key = Secret("sk_live_0123456789abcdef")
    log.info("calling with %s", key, extra=fields(api_key=key))
    text = stream.getvalue()
    assert "sk_live" not in text
    assert text.count("***") == 2
