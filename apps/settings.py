"""Options from the command line, the environment and a TOML file, for every subcommand.

Derived from the argparse parser, so a flag added to ``apps/cli.py`` gets the rest for free:

- ``--some-option`` is also ``DIAPROTO_SOME_OPTION`` (the action's ``dest`` in upper case; an
  alias such as ``--mcp-allow-host`` is ``DIAPROTO_MCP_ALLOW_HOST`` too) and the key
  ``some-option`` or ``some_option`` of the file that ``--config FILE`` (or
  ``DIAPROTO_CONFIG``) names. A table named after the subcommand (``[serve]``, ``[worker]``)
  holds keys for that subcommand alone.
- Values are converted and checked as argparse would: the action's ``type`` and ``choices``;
  on/off options take ``1/0``, ``true/false``, ``yes/no``, ``on/off`` (a TOML boolean in the
  file); an option that may be repeated takes a comma-separated list (a TOML array in the file).
- Precedence: flags, then the environment, then the file, then the defaults.
- A secret (:data:`SECRET_OPTIONS`) may also be read from a file, Docker-secrets style:
  ``--mcp-token-file PATH``, ``DIAPROTO_MCP_TOKEN_FILE``, or the file key ``mcp_token_file``,
  so that it never appears in ``ps``. Within one source, giving both is an error.

A bad value or an unknown key of the file is a :class:`SettingsError`: one line naming where
it came from (the command prints it and exits with status 2). Unknown ``DIAPROTO_*``
variables are ignored: other tools share the prefix.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "DIAPROTO_"
#: Options whose value is a secret: each gets a ``--<option>-file PATH`` twin. Those that the
#: parser lacks are skipped.
SECRET_OPTIONS = frozenset({"mcp_token", "api_key"})
CONFIG_DEST = "config"
FILE_SUFFIX = "_file"
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})


class SettingsError(Exception):
    """A value that cannot be used, with the one line that says where it came from and why."""


def add_options(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand ``--config FILE`` and a ``--<secret>-file PATH`` per secret."""
    for sub in _subcommands(parser).values():
        group = sub.add_argument_group(
            "configuration (every option is also DIAPROTO_<OPTION> and a key of the file)"
        )
        group.add_argument(
            "--config",
            dest=CONFIG_DEST,
            metavar="FILE",
            help="a TOML file of options (keys as the options' names; flags and DIAPROTO_* "
            "variables win over it)",
        )
        for action in list(sub._actions):
            if action.dest in SECRET_OPTIONS and action.option_strings:
                flag = _long_name(action)
                group.add_argument(
                    f"--{flag}-file",
                    dest=action.dest + FILE_SUFFIX,
                    metavar="PATH",
                    help=f"read --{flag} from this file (kept out of the process list)",
                )


def parse_args(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> argparse.Namespace:
    """Parse ``argv`` (flags) over ``environ`` over the ``--config`` file over the defaults.

    A bad flag exits as argparse does (status 2); anything else wrong is a SettingsError."""
    import os  # noqa: PLC0415 (the default only)

    env = os.environ if environ is None else environ
    subcommands = _subcommands(parser)
    with _Detecting(subcommands.values()):
        given = parser.parse_args(argv)  # every option left out is None
    sub = subcommands.get(getattr(given, "command", None) or "")
    if sub is None:  # no subcommand with options: nothing to layer
        return given
    options = _Options(sub)
    layers = [
        _Layer("flags", {d: v for d, v in vars(given).items() if v is not None}),
        _Layer("environment", options.from_environment(env)),
    ]
    config = layers[0].values.get(CONFIG_DEST) or layers[1].values.get(CONFIG_DEST)
    if config:
        file_values = options.from_file(Path(config), given.command, set(subcommands))
        layers.append(_Layer(str(config), file_values))
    values = _merge(layers, options)
    for action in options.actions:
        if action.dest in values:
            setattr(given, action.dest, values[action.dest])
        else:
            setattr(given, action.dest, _default(sub, action))
        if action.required and action.dest not in values:
            sub.error(f"the following arguments are required: {'/'.join(action.option_strings)}")
    return given


def parse_command_line(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """:func:`parse_args` for the command: a SettingsError is one line and exit status 2."""
    try:
        return parse_args(parser, argv)
    except SettingsError as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")


# --- the parser -------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            choices: dict[str, argparse.ArgumentParser] = action.choices
            return dict(choices)
    return {}


def _long_name(action: argparse.Action) -> str:
    longs = [o for o in action.option_strings if o.startswith("--")]
    return (longs[0] if longs else action.option_strings[0]).lstrip("-")


def _configurable(sub: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in sub._actions:
        # Not --help, --version (SUPPRESS), nor a positional argument.
        if action.option_strings and argparse.SUPPRESS not in (action.dest, action.default):
            yield action


class _Detecting:
    """While parsing the flags: every option defaults to None and none is required, so what
    the command line gave is what is not None. Restored on exit."""

    def __init__(self, subs: Iterable[argparse.ArgumentParser]) -> None:
        self.saved: list[tuple[argparse.Action, Any, bool]] = []
        self.subs = list(subs)

    def __enter__(self) -> None:
        for sub in self.subs:
            for action in _configurable(sub):
                self.saved.append((action, action.default, action.required))
                action.default, action.required = None, False

    def __exit__(self, *_exc: object) -> None:
        for action, default, required in self.saved:
            action.default, action.required = default, required


def _default(sub: argparse.ArgumentParser, action: argparse.Action) -> Any:
    """The action's default as argparse gives it (a string default goes through ``type``)."""
    default = sub.get_default(action.dest)
    if isinstance(default, str) and callable(action.type):
        return action.type(default)
    return default


# --- reading and converting values ----------------------------------------------------------


@dataclass
class _Layer:
    source: str  # "flags", "environment", or the file's path
    values: dict[str, Any]


class _Options:
    """The options of one subcommand, by every name they go by."""

    def __init__(self, sub: argparse.ArgumentParser) -> None:
        self.actions = list(_configurable(sub))
        self.by_name: dict[str, argparse.Action] = {}
        for action in self.actions:
            self.by_name[action.dest] = action
            for option in action.option_strings:
                if option.startswith("--"):
                    self.by_name[option[2:].replace("-", "_")] = action

    def from_environment(self, environ: Mapping[str, str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, action in self.by_name.items():
            variable = ENV_PREFIX + name.upper()
            if variable not in environ or _service_link(environ[variable]):
                continue
            values[action.dest] = convert(action, environ[variable], variable)
        return values

    def from_file(self, path: Path, command: str, commands: set[str]) -> dict[str, Any]:
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError(f"--config {path}: {exc.strerror or exc}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"--config {path}: not TOML: {exc}") from exc
        values: dict[str, Any] = {}
        section = document.get(command, {})
        entries = [*document.items(), *(section.items() if isinstance(section, dict) else ())]
        for key, value in entries:
            if key in commands and isinstance(value, dict):
                continue  # a subcommand's table: this one's is read, the others' are theirs
            action = self.by_name.get(key.replace("-", "_"))
            if action is None or action.dest == CONFIG_DEST:
                raise SettingsError(f"{path}: unknown key {key!r} for 'diaproto {command}'")
            values[action.dest] = convert(action, value, f"{path}: {key}")
        return values


def _service_link(value: str) -> bool:
    """Kubernetes sets ``<SERVICE>_PORT=tcp://10.0.0.1:8000`` in every pod of a namespace with
    a Service of that name: a Service called ``diaproto`` would set our ``--port``."""
    return value.startswith(("tcp://", "udp://", "sctp://"))


def convert(action: argparse.Action, raw: Any, source: str) -> Any:
    """``raw`` (an environment string or a TOML value) as the action's value."""
    try:
        if _is_switch(action):
            on = _boolean(raw)
            if isinstance(action, argparse.BooleanOptionalAction):
                return on
            return action.const if on else action.default
        if _is_list(action):
            items = raw if isinstance(raw, list) else str(raw).split(",")
            return [_one(action, item) for item in items if str(item).strip()]
        return _one(action, raw)
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        shown = "<hidden>" if action.dest in SECRET_OPTIONS else repr(raw)  # never echo a key
        raise SettingsError(f"{source}={shown}: {exc}") from exc


def _is_switch(action: argparse.Action) -> bool:
    return action.nargs == 0 and not isinstance(action, argparse._AppendConstAction)


def _is_list(action: argparse.Action) -> bool:
    return isinstance(action, argparse._AppendAction) or action.nargs in ("*", "+")


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError("not a boolean (1/0, true/false, yes/no, on/off)")


def _one(action: argparse.Action, raw: Any) -> Any:
    if isinstance(raw, bool | list | dict):
        raise TypeError(f"expected one value, not {type(raw).__name__}")
    text = str(raw).strip()
    value = action.type(text) if callable(action.type) else text
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ValueError(f"invalid choice (choose from {choices})")
    return value


# --- precedence and secrets -----------------------------------------------------------------


def _merge(layers: list[_Layer], options: _Options) -> dict[str, Any]:
    """Each option from the first layer that has it; a secret from its value or its file."""
    merged: dict[str, Any] = {}
    secrets = {dest for dest in SECRET_OPTIONS if dest in options.by_name}
    for layer in reversed(layers):  # the lowest first: each higher layer overwrites
        for dest, value in layer.values.items():
            if dest in secrets or dest.removesuffix(FILE_SUFFIX) in secrets:
                continue
            merged[dest] = value
    for dest in secrets:
        secret = _secret(layers, dest)
        if secret is not None:
            merged[dest] = secret
        merged[dest + FILE_SUFFIX] = None  # read: the value is what counts
    return merged


def _secret(layers: list[_Layer], dest: str) -> str | None:
    for layer in layers:
        value, path = layer.values.get(dest), layer.values.get(dest + FILE_SUFFIX)
        if value is not None and path is not None:
            name = dest.replace("_", "-")
            raise SettingsError(f"{layer.source}: give {name} or {name}-file, not both")
        if value is not None:
            if not str(value).strip():
                # An unset variable in a compose file gives "": that must not mean "no key".
                name = dest.replace("_", "-")
                raise SettingsError(f"{layer.source}: {name} is set but empty")
            return str(value)
        if path is not None:
            return _read_secret(Path(path), f"{layer.source}: {dest}{FILE_SUFFIX}")
    return None


def _read_secret(path: Path, source: str) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SettingsError(f"{source}={str(path)!r}: cannot read it: {reason}") from exc
    if not secret:
        raise SettingsError(f"{source}={str(path)!r}: the file is empty")
    return secret
