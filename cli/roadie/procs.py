"""Processes roadie starts and stops: detached, recorded by PID, checked by identity.

A PID alone can be reused after a reboot or a long gap, so a recorded process
counts as ours only while its command line still carries the marker we gave it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def last_line(text: str | None, default: str = "no output") -> str:
    """The last non-blank line of a process's output: where tools say what went wrong."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else default


def run(argv: list[str], what: str | None = None, error=None, **kwargs) -> subprocess.CompletedProcess:
    """Run argv to its end (text, output captured); on a non-zero exit raise `error`
    (OperationFailed by default) naming `what` (default: the command line) and the
    last line of its stderr (or stdout when stderr is empty). A missing program is
    the same error, not a traceback."""
    from roadie.errors import OperationFailed

    error = error or OperationFailed
    what = what or f"`{' '.join(str(a) for a in argv)}`"
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    try:
        proc = subprocess.run(argv, **kwargs)
    except (FileNotFoundError, PermissionError) as exc:
        raise error(f"{what} failed: cannot run {argv[0]}: {exc.strerror}.") from None
    if proc.returncode != 0:
        raise error(f"{what} failed: {last_line(proc.stderr or proc.stdout, f'exit {proc.returncode}')}")
    return proc


def start_detached(argv: list[str], log: Path, env: dict | None = None) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    return proc.pid


def cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return None
    if state in ("Z", "X"):
        return None
    return raw.decode(errors="replace").rstrip("\0").split("\0")


def alive(pid: int | None, marker: str) -> bool:
    """True while `pid` runs and its command line contains `marker`.

    The command line is matched NUL-joined with a trailing NUL, so a marker
    like "-H\0198.18.0.1\0" pins exact arguments (and not 198.18.0.129).
    """
    if not pid or not marker:
        return False
    args = cmdline(pid)
    return args is not None and marker in "\0".join(args) + "\0"


def find(marker: str) -> list[int]:
    """PIDs whose command line contains `marker` (for sweeping a lost record)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and alive(int(entry.name), marker):
            found.append(int(entry.name))
    return found


def stop(pids_markers: list[tuple[int, str]], timeout: float = 20.0) -> None:
    """SIGTERM each live process, wait for all, SIGKILL what remains."""
    live = [(p, m) for p, m in pids_markers if alive(p, m)]
    for pid, _ in live:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while live and time.monotonic() < deadline:
        _reap()
        live = [(p, m) for p, m in live if alive(p, m)]
        if live:
            time.sleep(0.1)
    for pid, _ in live:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _reap() -> None:
    """Collect our own exited children so they do not linger as zombies."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
