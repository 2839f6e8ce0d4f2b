"""Typed errors: each names the node, file or tool at fault and what to do. The CLI turns them
into one line on stderr and a non-zero exit code."""


class QpdeError(Exception):
    """Base class of every error qpde reports to a user."""


class ConfigError(QpdeError):
    """A config file, scenario string or option is invalid."""


class DataError(QpdeError):
    """A dataset file is missing, truncated or in the wrong layout."""


class GraphError(QpdeError):
    """A model graph is malformed or contains an op a backend cannot implement exactly."""


class ToolError(QpdeError):
    """An external tool is missing or failed; the message names it and where its log is."""


class MismatchError(QpdeError):
    """A simulation differs from the golden."""


class DesignTooLargeError(QpdeError):
    """A fully parallel design exceeds the configured size cap; `estimate` holds its LUT estimate."""

    def __init__(self, message: str, estimate: float):
        super().__init__(message)
        self.estimate = estimate
