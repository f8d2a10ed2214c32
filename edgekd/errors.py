"""The one exception type for mistakes a user can make.

Anything a user can get wrong (a recipe key, a data file, a command-line flag) raises
:class:`EdgeKDError` with a single line that names what is wrong and what is allowed. The CLI
prints that line and exits with code 2; any other exception is a bug and keeps its traceback.
"""

__all__ = ["EdgeKDError"]


class EdgeKDError(Exception):
    """A user-facing error whose message is one self-explanatory line."""

    exit_code = 2
