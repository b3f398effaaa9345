"""The one base of every command's settings, and the one way a command runs them.

Each value comes from, in rising priority: its default, an environment variable (the tool's prefix
and the field's name, e.g. ``DETECTOR_SERVE_PORT``), a flag (``--port``). Flags are kebab case and a
bool is a bare flag with a ``--no-`` twin (``--evidence`` / ``--no-evidence``); unknown keywords are
ignored. A tool states what is its own with :func:`tool_config`: pydantic merges a class's
``model_config`` over its bases', so a subclass names only what differs::

    class ExportSettings(ToolSettings):
        model_config = tool_config("DETECTOR_EXPORT_", "python -m export.onnx")

This module needs pydantic-settings only, so torch-free consumers can use it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic_settings import BaseSettings, CliApp, SettingsConfigDict

#: the failures a command reports as one ``error: ...`` line on stderr and exit status 2, not a traceback
EXPECTED_ERRORS: tuple[type[Exception], ...] = (FileNotFoundError, ValueError)


class ToolSettings(BaseSettings):
    """Kebab-case flags, bare boolean flags, unknown keywords ignored; each tool adds :func:`tool_config`."""

    model_config = SettingsConfigDict(cli_kebab_case=True, cli_implicit_flags=True, extra="ignore")


def tool_config(env_prefix: str | None = None, prog: str | None = None, **options: Any) -> SettingsConfigDict:
    """A tool's own settings options: its environment prefix, its program name in ``--help``, and any other."""
    config = SettingsConfigDict(**options)
    if env_prefix is not None:
        config["env_prefix"] = env_prefix
    if prog is not None:
        config["cli_prog_name"] = prog
    return config


Settings = TypeVar("Settings", bound=BaseSettings)


def run_cli(
    settings_class: type[Settings],
    job: Callable[[Settings], int | None],
    argv: list[str] | None = None,
    errors: tuple[type[Exception], ...] = EXPECTED_ERRORS,
) -> int:
    """Parse the flags (``argv``, else the command line) into ``settings_class``, run ``job`` on them.

    Returns the exit status: the job's (``None`` counts as 0), or 2 after printing ``error: <message>``
    when the job raises one of ``errors``.
    """
    settings = CliApp.run(settings_class, cli_args=argv)
    try:
        status = job(settings)
    except errors as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0 if status is None else status
