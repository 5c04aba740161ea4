"""Saving a folder of files all or nothing, even when the saving process is killed.

A save first writes every file into a private staging folder beside its targets, then renames each
over its target: a file is always either the old one or the complete new one. A save of several
files that belong together (config.json and model.safetensors; vocab.txt and the tokenizer's
settings) removes one of them, the *completing file*, before it renames anything, and renames it
into place last. Loading needs that file, so a save killed between the first and the last rename
leaves a folder that refuses to load (see ``check_not_interrupted``), never new weights under an
old config. (A load that runs *while* a save runs could still read config.json before the save and
the weights after it; for that, the weights record their config's digest: loading/pretrained.py.)

The staging folder is ``.minibert-save.{pid}.{random}.tmp``; whatever a writer puts there (safetensors
writes through a temporary file of its own) goes with it. A later save into the folder removes the
staging folders whose process is gone, and the temporary files older minibert versions left
(``.{target}.{8 characters}.tmp``).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
from pathlib import Path
from typing import Callable

Writer = Callable[[Path], None]  # fills the file at the given path
STAGING = re.compile(r"\.minibert-save\.(\d+)\.[0-9a-f]{8}\.tmp")


def save_files(directory: str | os.PathLike, writers: dict[str, Writer], completing: str | None = None,
               removing: tuple[str, ...] = ()) -> Path:
    """Write ``directory/name`` for each ``name, write`` in ``writers``, all or nothing.

    ``completing`` (default: the last name) is the file renamed into place last. Each file gets the
    permissions a plain ``open(path, "w")`` would give a new file (0o666 less the umask). A write
    that raises leaves the old files as they were and nothing else. ``removing``: files the new
    ones make stale (another library's description of the same thing); they go together with the
    completing file, before any new file is renamed in, so no moment shows them beside new files.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    completing = completing if completing is not None else list(writers)[-1]
    remove_stale_saves(directory, list(writers))
    staging = _new_staging_folder(directory)
    try:
        for name, write in writers.items():
            _write_file(staging / name, write)
        if len(writers) > 1 or removing:
            # From here until the last rename the folder lacks its completing file, so it cannot load.
            for name in (completing, *removing):
                (directory / name).unlink(missing_ok=True)
            _sync_directory(directory)
        for name in writers:
            if name != completing:
                os.replace(staging / name, directory / name)
        _sync_directory(directory)  # the other renames reach the disk before the completing one
        os.replace(staging / completing, directory / completing)
        _sync_directory(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


class SaveInProgressError(OSError):
    """A folder's files do not belong together yet: a save into it is running (a loader may retry)."""


def check_not_interrupted(directory: str | os.PathLike, name: str) -> None:
    """Raise OSError when ``directory`` lacks ``name`` because a save into it was killed midway, and
    SaveInProgressError when the save that removed it is still running."""
    directory = Path(directory)
    if not directory.is_dir() or (directory / name).exists():
        return
    for staging in sorted(path for path in directory.iterdir() if STAGING.fullmatch(path.name)):
        if (staging / name).exists():
            pid = int(STAGING.fullmatch(staging.name).group(1))
            if _is_running(pid):
                raise SaveInProgressError(f"{directory} has no {name} for a moment: process {pid} is saving into it")
            raise OSError(
                f"{directory} has no {name}: a save into it was interrupted before it completed ({staging.name} "
                "is left from it). Save again; the files there may be old or new."
            )


def remove_stale_saves(directory: Path, names: list[str]) -> None:
    """Delete what killed saves left in ``directory``; not the staging folder of a live process."""
    legacy = re.compile(rf"\.(?:{'|'.join(map(re.escape, names))})\.[a-z0-9_]{{8}}\.tmp")  # tempfile.mkstemp's
    for path in directory.iterdir():
        staging = STAGING.fullmatch(path.name)
        if staging and path.is_dir() and not _is_running(int(staging.group(1))):
            shutil.rmtree(path, ignore_errors=True)
        elif legacy.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)


def _is_running(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of ours may be saving
    if os.name == "nt":
        return True  # os.kill would end the process there; leave the folder
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, under another user
    return True


def _new_staging_folder(directory: Path) -> Path:
    while True:
        staging = directory / f".minibert-save.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            staging.mkdir()
            return staging
        except FileExistsError:
            continue


def _write_file(path: Path, write: Writer) -> None:
    """Have ``write`` fill ``path``, with a plain open's permissions, and flush it to the disk."""
    # Created with 0o666 so that the kernel applies the umask, as for open(path, "w"); the resulting
    # mode is re-applied after writing, because a writer may replace the file (safetensors writes a
    # 0o600 temporary file and renames it over its target).
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
    mode = stat.S_IMODE(path.stat().st_mode)
    write(path)
    os.chmod(path, mode)
    with open(path, "rb+") as written:
        os.fsync(written.fileno())  # the data is on disk before a rename makes it visible


def _sync_directory(directory: Path) -> None:
    """Flush a directory's entries, so that renames reach the disk in the order they were made."""
    if os.name == "nt":
        return  # a directory cannot be opened for fsync there
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
