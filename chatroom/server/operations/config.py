"""Settings from a TOML file (``--config FILE``) under the command line, and back out as TOML
(``--print-config``).

Any long option may be set in the file, by its name with or without the dashes
(``max-clients = 500`` or ``max_clients = 500``); what the command line says wins. Values go
through the same checks as on the command line.
"""

import argparse
import json
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Options that are about reading settings, not settings.
NOT_SETTINGS = {"help", "version", "config", "print_config"}


def parse_with_config(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """The arguments, with --config FILE's settings as the defaults they override."""
    args = parser.parse_args(argv)
    if args.config:
        parser.set_defaults(**_settings_from(parser, args.config))
        args = parser.parse_args(argv)
    return args


def _settings_from(parser: argparse.ArgumentParser, path: str) -> dict:
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as err:
        parser.error(f"cannot read the config file {path}: {err}")
    actions = {action.dest: action for action in parser._actions if action.dest not in NOT_SETTINGS}
    settings = {}
    for key, value in table.items():
        dest = key.replace("-", "_")
        action = actions.get(dest)
        if action is None:
            parser.error(f"{path}: no such setting: {key}")
        settings[dest] = _checked(parser, path, key, action, value)
    return settings


def _checked(parser, path, key, action, value):
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            parser.error(f"{path}: {key} is true or false")
        return value
    if action.type is not None:
        try:
            value = action.type(str(value))
        except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
            parser.error(f"{path}: {key}: {err}")
    if action.choices is not None and value not in action.choices:
        parser.error(f"{path}: {key} is one of {', '.join(map(str, action.choices))}")
    return value


def as_toml(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The effective settings, as a config file would give them."""
    lines = []
    for action in parser._actions:
        if action.dest in NOT_SETTINGS or not action.option_strings:
            continue
        key = action.dest.replace("_", "-")
        value = getattr(args, action.dest)
        if value is None:
            lines.append(f"# {key} is not set")
        elif isinstance(value, bool | int | float):
            lines.append(f"{key} = {json.dumps(value)}")
        elif isinstance(value, tuple):  # HOST:PORT
            lines.append(f"{key} = {json.dumps(':'.join(map(str, value)))}")
        else:
            lines.append(f"{key} = {json.dumps(str(value))}")
    return "\n".join(lines)
