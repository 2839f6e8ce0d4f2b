"""Running external tools (Yosys, nextpnr, ecppack, Verilator's make, Vitis/Vivado HLS, the FINN
runner) the one way qpde does: an argument list (never a shell string), a working directory, a log
file holding the command and everything the tool printed, a timeout that stops the tool *and every
process it started* (it runs in its own process group), and on failure a ToolError naming the tool,
the exit code, the log, and the log's last lines.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from qpde.errors import ToolError, ToolRunError

TAIL_LINES = 25


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last `lines` lines of a log file ('' when it cannot be read)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def find_tool(name: str) -> str | None:
    """`name` on PATH, else beside the running interpreter: the PyPI tools live in the virtual
    environment's bin/, which is not on PATH when qpde runs as `.venv/bin/qpde` unactivated."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def run_tool(cmd: list, cwd: Path, log: Path, timeout_s: float, tool: str, hint: str = "", *,
             env: dict[str, str] | None = None) -> float:
    """Run `cmd` in `cwd` with stdout and stderr in `log` (first line: the command); return seconds.

    stdin is closed (vitis_hls -f falls back to an interactive prompt when a script ends without
    `exit`). On a timeout, or if the caller is interrupted, the tool's process group gets SIGTERM,
    then SIGKILL after 30 s. A non-zero exit or a timeout raises ToolRunError (a ToolError) with the
    log's tail and `hint` (what to try next); a tool that cannot start raises ToolError."""
    cmd = [str(c) for c in cmd]
    shown = " ".join(cmd)
    log = Path(log)
    start = time.perf_counter()
    with open(log, "w") as out:
        out.write(f"$ cd {cwd} && {shown}\n")
        out.flush()
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise ToolError(f"{tool}: could not start ({exc}); command: {shown}") from exc
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            _stop_group(proc)
            raise ToolRunError(f"{tool}: timed out after {timeout_s:.0f} s ({shown}); log: {log}"
                               + (f"; {hint}" if hint else "") + f"\n{tail(log)}",
                               tool=tool, returncode=None, timed_out=True, log=str(log)) from exc
        except BaseException:
            _stop_group(proc)
            raise
    if code != 0:
        raise ToolRunError(f"{tool}: exit {code} ({shown}); log: {log}\n{tail(log)}",
                           tool=tool, returncode=code, timed_out=False, log=str(log))
    return time.perf_counter() - start


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the tool's process group, SIGKILL it if still there after 30 s; reap the tool."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue
