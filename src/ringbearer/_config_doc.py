"""The config as a TOML document: ``config show`` (every default filled in) and ``config init``.

Secrets stay references (``{ env = "NAME" }``); tomli-w writes the TOML.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def config_document(config: Any) -> dict[str, Any]:
    """A loaded config as plain data, every default filled in, secrets as their references.

    Integrations are written out whole (what ``[defaults]`` gave them is in
    each), so the document has no ``[defaults]`` of its own.
    """
    import attrs

    from ._config import make_converter

    converter = make_converter()
    document: dict[str, Any] = {
        f.name: converter.unstructure(getattr(config, f.name))
        for f in attrs.fields(type(config))
        if attrs.has(type(getattr(config, f.name)))  # the sections; not source, not the maps
    }
    document["integrations"] = {
        name: _integration(converter, settings) for name, settings in config.integrations.items()
    }
    document["groups"] = {name: list(members) for name, members in config.groups.items()}
    cleaned: dict[str, Any] = _without_none(document)
    return cleaned


def _integration(converter: Any, settings: Any) -> dict[str, Any]:
    import attrs

    shared = {
        f.name: converter.unstructure(getattr(settings, f.name))
        for f in attrs.fields(type(settings))
        if f.name not in ("name", "family", "provider")
    }
    return {**shared, **converter.unstructure(settings.provider)}


STARTER_SECRETS = {
    "resend": {"api_key": {"env": "RESEND_API_KEY"}},
    "mailgun": {"api_key": {"env": "MAILGUN_API_KEY"}, "domain": "mg.example.com"},
    "smtp": {
        "host": "smtp.example.com",
        "username": {"env": "SMTP_USERNAME"},
        "password": {"env": "SMTP_PASSWORD"},
    },
}


def starter_document() -> dict[str, Any]:
    """``config init``: every section at its defaults, the sandbox on, one email group."""
    import attrs

    from ._config import _Defaults, _TopLevel, make_converter
    from .integrations import provider_kinds

    converter, kinds = make_converter(), provider_kinds()
    top = _TopLevel()
    document: dict[str, Any] = {
        f.name: converter.unstructure(getattr(top, f.name))
        for f in attrs.fields(_TopLevel)
        if attrs.has(type(getattr(top, f.name)))
    }
    document["sandbox"]["enabled"] = True
    document["defaults"] = converter.unstructure(_Defaults())
    document["integrations"] = {
        name: {
            "kind": name,
            # Structured then unstructured: the provider's own defaults filled in.
            **converter.unstructure(converter.structure(raw, kinds[name].settings_type)),
        }
        for name, raw in STARTER_SECRETS.items()
    }
    document["groups"] = {"email": list(STARTER_SECRETS)}
    cleaned: dict[str, Any] = _without_none(document)
    return cleaned


def _without_none(value: Any) -> Any:
    """TOML has no null: a key whose value is None is left out (None is then its default)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_none(v) for v in value]
    return value


def to_toml(document: Mapping[str, Any], header: str = "") -> str:
    """TOML by tomli-w; small leaf tables (secret references, principals) written inline."""
    import tomli_w

    inline: dict[str, str] = {}
    text = tomli_w.dumps(_inline_small(document, inline, depth=0))
    for token, rendered in inline.items():
        text = text.replace(tomli_w.dumps({"v": token})[4:-1], rendered)
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comments + ("\n" if comments else "") + text


def _inline_small(value: Any, inline: dict[str, str], depth: int) -> Any:
    """Replace short arrays and small leaf tables by tokens for their one-line forms.

    tomli-w writes every table as a ``[section]`` and every array over several
    lines; ``api_key = { env = "NAME" }`` and ``weekdays = ["saturday"]`` read
    better. Sections (the top two levels) stay sections.
    """
    small = isinstance(value, list) or (isinstance(value, dict) and depth >= 2 and len(value) <= 2)
    rendered = _one_line(value) if small else None
    if rendered is not None and len(rendered) <= INLINE_WIDTH:
        token = f"@@ringbearer-inline-{len(inline)}@@"
        inline[token] = rendered
        return token
    if isinstance(value, dict):
        return {k: _inline_small(v, inline, depth + 1) for k, v in value.items()}
    return value


INLINE_WIDTH = 80


def _one_line(value: Any) -> str | None:
    """``value`` as one line of TOML, or None when it holds a table of tables."""
    import tomli_w

    if isinstance(value, list):
        items = [_one_line(v) for v in value]
        return None if None in items else "[" + ", ".join(str(i) for i in items) + "]"
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            one = None if isinstance(v, dict) else _one_line(v)
            if one is None:
                return None
            parts.append(f"{tomli_w.dumps({k: 0}).rstrip()[: -len(' = 0')]} = {one}")
        return "{ " + ", ".join(parts) + " }" if parts else "{}"
    return str(tomli_w.dumps({"v": value})[4:-1])
