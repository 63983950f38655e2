"""The ``[daemon]`` section, and where a config's daemon listens.

Apart from the rest of the config so that a CLI call finds the daemon's
socket without loading every provider's settings.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import attrs

from . import _converter
from ._converter import PositiveFloat
from ._errors import ConfigError, ConfigProblem


@attrs.frozen
class DaemonSettings:
    state_dir: str = "state"
    socket: str = ""  # default: <state_dir>/ringbearer.sock
    grace_seconds: PositiveFloat = PositiveFloat(10.0)
    heartbeat_seconds: PositiveFloat = PositiveFloat(1.0)
    log_level: str = attrs.field(default="info")

    @log_level.validator
    def _check_level(self, _: Any, value: str) -> None:
        if value not in {"debug", "info", "warning", "error"}:
            raise ValueError(f"log_level must be debug, info, warning or error, got {value!r}")


def socket_path(source: Path, daemon: DaemonSettings) -> Path:
    if daemon.socket:
        return relative(source, daemon.socket)
    return relative(source, daemon.state_dir) / "ringbearer.sock"


def relative(source: Path, value: str) -> Path:
    """A path from the config, relative to the config file's folder unless absolute."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else source.parent / path


def socket_path_of(path: str | Path) -> Path:
    """Where the daemon of a config file listens, reading only its ``[daemon]`` section.

    A file broken elsewhere still leads to its daemon, which can then say
    what is wrong with it (``ringbearer reload``).
    """
    source = Path(path).absolute()
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(source), [ConfigProblem("", f"cannot read: {exc}")]) from exc
    try:
        daemon = _converter.make().structure(raw.get("daemon", {}), DaemonSettings)
    except Exception as exc:
        raise ConfigError(str(source), _converter.problems(exc, "daemon")) from exc
    return socket_path(source, daemon)
