"""Whether root may trust a file: the daemon runs as root, reads policies as orders and
runs the programs they name, so whoever can change one of them can act as root.

The rules, as sshd's StrictModes and sudo apply them:

- A trusted owner is root. When host-supervisor does not run as root (the tests, a
  `validate` run by a user), it is root or the user it runs as: such a user could
  change their own files anyway, and no one else's are trusted.
- A file read or run as root (the main config, a policy, a command check's program, a
  restore's `validate` program, a failover's `can_recover` program) must have a trusted
  owner and must not be writable by group or others.
- The config directory and policies.d must have a trusted owner and must not be
  writable by group or others: whoever can add a file there could add a policy.
- Every directory on the way to any of them, from /, must have a trusted owner and
  must not be writable by group or others, unless it has the sticky bit (like /tmp,
  where no one else can rename or remove what is not theirs). Symbolic links are
  followed, and the directories on the way to what they name are checked too.

Each function returns None when the path may be trusted, else why not, in one line
that names the path at fault and how to fix it.
"""

from __future__ import annotations

import os
import stat

__all__ = [
    "directory_refusal",
    "file_refusal",
    "path_refusal",
    "trusted_owner",
]

_MAX_LINKS = 40  # as the kernel's ELOOP


def trusted_owner(uid: int) -> bool:
    """Root, or when not running as root the user host-supervisor runs as."""
    return uid == 0 or uid == os.geteuid()


def _owner_refusal(info: os.stat_result, what: str) -> str | None:
    if trusted_owner(info.st_uid):
        return None
    if os.geteuid() == 0:
        return f"{what} is owned by uid {info.st_uid}, not root; run chown root on it"
    return (
        f"{what} is owned by uid {info.st_uid}, neither root nor the user running "
        f"host-supervisor (uid {os.geteuid()}); run chown root on it"
    )


def _writers(info: os.stat_result) -> list[str]:
    return [
        who
        for who, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH))
        if info.st_mode & bit
    ]


def file_refusal(info: os.stat_result, what: str = "the file") -> str | None:
    """Why a file (to read as policy or to run) may not be trusted, from its stat."""
    writers = _writers(info)
    if writers:
        mode = stat.S_IMODE(info.st_mode)
        return (
            f"{what} is writable by {' and '.join(writers)} (mode {mode:04o}); run chmod go-w on it"
        )
    return _owner_refusal(info, what)


def directory_refusal(info: os.stat_result, what: str, *, sticky_ok: bool) -> str | None:
    """Why a directory may not be trusted, from its stat; with `sticky_ok`, one writable
    by others but with the sticky bit is trusted (it only leads to what we look at)."""
    writers = _writers(info)
    if writers and not (sticky_ok and info.st_mode & stat.S_ISVTX):
        mode = stat.S_IMODE(info.st_mode)
        bare = " without the sticky bit" if sticky_ok else ""
        return (
            f"{what} is writable by {' and '.join(writers)} (mode {mode:04o}){bare}; "
            "run chmod go-w on it"
        )
    return _owner_refusal(info, what)


def path_refusal(path: str, *, directory: bool = False, name: str | None = None) -> str | None:
    """Why `path` (absolute) may not be trusted: every directory on the way from /, every
    symbolic link's target, and the file itself (or with `directory`, the directory
    itself, which then may not be writable by others even with the sticky bit). `name`
    is what to call the file itself when it is at fault (default: its path)."""
    if not path.startswith("/"):
        return f"{path} is not an absolute path"
    pending = [part for part in path.split("/") if part]
    pending.reverse()  # a stack: the next component last
    current = "/"
    links = 0
    try:
        refusal = directory_refusal(os.stat("/"), "/", sticky_ok=bool(pending))
        if refusal or not pending:
            return refusal
        while pending:
            part = pending.pop()
            if part == ".":
                continue
            if part == "..":
                current = os.path.dirname(current)
                continue
            candidate = os.path.join(current, part)
            info = os.lstat(candidate)
            if stat.S_ISLNK(info.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    return f"{path} has too many levels of symbolic links"
                target = os.readlink(candidate)
                if target.startswith("/"):
                    current = "/"
                pending.extend(reversed([part for part in target.split("/") if part]))
                continue
            last = not pending
            if last and not directory:
                return file_refusal(info, name or candidate)
            if not stat.S_ISDIR(info.st_mode):
                return f"{candidate} is not a directory"
            refusal = directory_refusal(info, candidate, sticky_ok=not last)
            if refusal:
                return refusal
            current = candidate
    except OSError as exc:
        return f"cannot check {exc.filename or path}: {exc.strerror or exc}"
    # Only `.` and `..` were left: the path names a directory already checked.
    return None if directory else f"{path} is not a file"
