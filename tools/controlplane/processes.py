"""Starting, checking and stopping the long-running components of the test cluster (control plane, real
node, registry): one way for all of them, so that none outlives the run that started it and a component
that died says why (the tail of its log)."""

from __future__ import annotations

import ctypes
import signal
import subprocess
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux (as `preexec_fn`): the component gets SIGTERM when the process that started it dies, even by
    SIGKILL, so a killed test run or demo never leaves a component behind. The signal survives exec (so an
    `nsenter` that execs the component keeps it)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(argv: list[str], log_path: Path) -> subprocess.Popen:
    """Start `argv` in its own session, stdout and stderr appended to `log_path`, dying with its parent."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


def alive(proc: subprocess.Popen | None) -> bool:
    return proc is not None and proc.poll() is None


def terminate(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    """SIGTERM, and SIGKILL if it is still there after `timeout` seconds; nothing if it has already gone."""
    if not alive(proc):
        return
    assert proc is not None
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def exit_report(proc: subprocess.Popen, what: str, log_path: Path, tail: int = 3000) -> str | None:
    """None while `proc` runs; once it has exited, a message naming `what`, its exit code and its log's
    tail (for the caller's own error type)."""
    if proc.poll() is None:
        return None
    text = log_path.read_text(errors="replace")[-tail:] if log_path.exists() else "(no log)"
    return f"{what} exited with code {proc.returncode}:\n{text}"
