"""What every command shares: the console, parameter files and --set, and the guard that turns
failures into one line (with the traceback in a log file)."""
from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from pathlib import Path

import click

from ..errors import InputError, command_line

logger = logging.getLogger("crsae_sort")
_CONSOLE = "crsae_sort.console"


def setup_console(verbose: bool) -> bool:
    """Log to stderr: warnings; with -v every INFO line; without a terminal (a batch log, a pipe: no
    progress bars there) also the lines marked as progress, one per stage.

    ``-v`` counts before the command too (``crsae-sort -v sort ...``); returns whether it was given."""
    context = click.get_current_context(silent=True)
    verbose = bool(verbose or (context is not None and context.find_root().params.get("verbose")))
    for old in [h for h in logger.handlers if h.get_name() == _CONSOLE]:  # an earlier command in this process
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_CONSOLE)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.setLevel(logging.INFO if verbose or not sys.stderr.isatty() else logging.WARNING)
    if not verbose:
        handler.addFilter(lambda r: r.levelno >= logging.WARNING or getattr(r, "progress", False))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return verbose


def failed_log(output) -> Path:
    from ..io.outfolder import failed_log_path

    return failed_log_path(Path(output).resolve())


class Doing:
    """What a command is doing now, for the message of an unexpected failure."""

    def __init__(self, what: str):
        self.what = what


def parse_sets(pairs: tuple[str, ...]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise InputError(f"--set {pair!r} must look like key=value (see `crsae-sort params`)")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def load_params_file(path: str | None) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read parameters from {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a JSON object of parameter: value")
    return data


def run_guarded(fn, *, doing: Doing, verbose: bool, failed_log: Path | None = None):
    """Input errors become their one-line message. Anything else (a bug, a system fault) says what was
    being done and where its traceback is (``failed_log``, unless the sort kept its own log there),
    and -v prints the traceback."""
    started = time.time()
    try:
        with command_line():
            return fn()
    except InputError as exc:
        logger.debug("input error", exc_info=True)
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        from ..runlog import write_failure_log

        log = write_failure_log(failed_log, doing.what, exc, since=started) if failed_log is not None else None
        if verbose:
            click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
            where = "the traceback is above" + (f" and in {log}" if log else "")
        else:
            where = (f"the traceback is in {log}; " if log else "") + "rerun with -v to print it"
        text = str(exc).strip().rstrip(".")
        raise click.ClickException(f"while {doing.what}: {type(exc).__name__}: {text}; {where}") from None
