"""The output folder: written beside the target, moved into place only when complete.

A run writes into ``.<name>.partial`` next to the target, holding a ``LOCK`` file with its
process id. On success the partial folder is renamed to the target (an atomic rename on one
file system). On an input error it is removed. On any other failure the log, with the
traceback, is kept as ``<name>.crsae_sort-failed.log`` beside the target and the partial
folder is kept for ``--resume`` when it holds a training checkpoint. A killed run leaves only
the hidden partial folder, never a folder that looks finished.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

from ..errors import InputError, option

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FORMAT = 5  # version of the files in it (init.pt, trained.pt, training.pt); others are refused
# (3: the optimizers are crsae_sort.optim.Adam)


def partial_path(target: Path) -> Path:
    return target.parent / f".{target.name}.partial"


def failed_log_path(target: Path) -> Path:
    return target.parent / f"{target.name}.crsae_sort-failed.log"


def check_target(target: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse, before any work, what would clobber results or cannot be written."""
    if target.exists() and not overwrite:
        raise InputError(f"output folder {target} exists; pass {option('overwrite=True', '--overwrite')} or choose "
                         "another")
    existing = next(p for p in target.parents if p.exists())  # missing parents are created, as by mkdir -p
    if not existing.is_dir():
        raise InputError(f"cannot create the output folder {target}: {existing} is a file; choose another path")
    if not os.access(existing, os.W_OK):
        raise InputError(f"cannot write into {existing} (permission denied); choose a writable folder")
    partial = partial_path(target)
    owner = _lock_owner(partial)
    if owner is not None and _alive(owner):
        raise InputError(f"another crsae-sort run (process {owner}) is writing {target}; wait for it or "
                         "choose another output folder")
    if resume and not has_checkpoint(partial):
        raise InputError(f"nothing to resume for {target}: no interrupted run in {partial.name}; run without "
                         f"{option('resume=True', '--resume')}")
    if partial.exists() and not resume:
        raise InputError(f"an interrupted run left {partial}; pass {option('resume=True', '--resume')} to continue "
                         "it, or delete that folder to start over")


def open_partial(target: Path, *, resume: bool) -> Path:
    """Create (or, resuming, reuse) the partial folder, and the target's missing parents; take its lock."""
    partial = partial_path(target)
    try:
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.mkdir(exist_ok=resume)
        (partial / "LOCK").write_text(str(os.getpid()))
    except OSError as exc:
        raise disk_error(exc, target.parent) from exc
    failed_log_path(target).unlink(missing_ok=True)
    return partial


def commit(partial: Path, target: Path) -> None:
    """Move the finished partial folder into place (replacing an old target)."""
    for checkpoint in list(partial.rglob(CHECKPOINT_DIR)):
        shutil.rmtree(checkpoint, ignore_errors=True)
    (partial / "LOCK").unlink(missing_ok=True)
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)


def abandon(partial: Path, target: Path, *, keep_for_resume: bool, log_name: str) -> Path | None:
    """Clean up after a failure; returns where the failure log was kept, if anywhere."""
    kept = None
    log = partial / log_name
    if keep_for_resume and log.exists():
        kept = failed_log_path(target)
        shutil.copyfile(log, kept)
    if keep_for_resume and has_checkpoint(partial):
        (partial / "LOCK").unlink(missing_ok=True)
    else:
        shutil.rmtree(partial, ignore_errors=True)
    return kept


def has_checkpoint(partial: Path) -> bool:
    """Whether an interrupted run left a checkpoint (top level or in a channel group's folder)."""
    return partial.exists() and next(partial.rglob(CHECKPOINT_DIR), None) is not None


def disk_error(exc: OSError, where: Path) -> InputError:
    """An OSError while writing, as a message that says what to do."""
    if exc.errno == errno.ENOSPC:
        return InputError(f"disk full while writing to {where}; free some space or choose another output folder")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return InputError(f"cannot write into {where} ({exc.strerror}); choose a writable folder")
    return InputError(f"could not write to {where}: {exc.strerror or exc}")


def _lock_owner(partial: Path) -> int | None:
    try:
        return int((partial / "LOCK").read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
