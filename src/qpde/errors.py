"""Typed errors: each names the node, file or tool at fault and what to do. The CLI turns them
into one line on stderr and one of the exit codes below (`EXIT_CODES`, README "Exit codes")."""

from __future__ import annotations

# Every qpde command exits with one of these.
EXIT_OK = 0  # done; every simulated design equals the golden
EXIT_MISMATCH = 1  # a simulation (C-sim, RTL sim, FINN execution) differs from the golden
EXIT_BAD_INPUT = 2  # the user's input is invalid: config, data file, model graph, inputs, busy --out
EXIT_FAILURE = 3  # an external tool failed, a worker died, or an internal error

EXIT_MEANINGS = {
    EXIT_OK: "ok",
    EXIT_MISMATCH: "a simulation differs from the golden",
    EXIT_BAD_INPUT: "bad input (config, data file, model graph, inputs, --out in use)",
    EXIT_FAILURE: "tool or internal failure (a tool failed, a worker died)",
}


class QpdeError(Exception):
    """Base class of every error qpde reports to a user."""


class ConfigError(QpdeError):
    """A config file, scenario string or option is invalid."""


class DataError(QpdeError):
    """A dataset, checkpoint or inputs file is missing, truncated, unsafe or in the wrong layout."""


class GraphError(QpdeError):
    """A model graph is malformed or contains an op a backend cannot implement exactly."""


class LockError(QpdeError):
    """Another qpde process holds the output folder."""


class ToolError(QpdeError):
    """An external tool is missing or failed; the message names it and where its log is."""


class ToolRunError(ToolError):
    """An external tool exited non-zero or ran past its timeout (qpde.backends.tools.run_tool)."""

    def __init__(self, message: str, *, tool: str, returncode: int | None, timed_out: bool, log: str):
        super().__init__(message)
        self.tool, self.returncode, self.timed_out, self.log = tool, returncode, timed_out, log


class MismatchError(QpdeError):
    """A simulation differs from the golden."""


class DesignTooLargeError(QpdeError):
    """A fully parallel design exceeds the configured size cap; `estimate` holds its LUT estimate."""

    def __init__(self, message: str, estimate: float):
        super().__init__(message)
        self.estimate = estimate


# One mapping from error type to exit code; the most specific base class wins (see `exit_code`).
EXIT_CODES: dict[type[BaseException], int] = {
    MismatchError: EXIT_MISMATCH,
    ConfigError: EXIT_BAD_INPUT,
    DataError: EXIT_BAD_INPUT,
    GraphError: EXIT_BAD_INPUT,
    LockError: EXIT_BAD_INPUT,
    FileNotFoundError: EXIT_BAD_INPUT,
    ToolError: EXIT_FAILURE,
    DesignTooLargeError: EXIT_FAILURE,
    QpdeError: EXIT_FAILURE,
}


def exit_code(exc: BaseException) -> int:
    """The exit code of an error: its own class's, else its nearest base class's, else 3."""
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_FAILURE


class SweepFailed(QpdeError):
    """Some variants of a finished sweep failed; `code` is the sweep's exit code (1 or 3 or 2)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code
