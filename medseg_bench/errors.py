"""The input-error family: problems with what the user gave (data, files, arguments), not bugs.

The CLI prints an :class:`InputError` as one clean message and exits with code 2; any other
exception is a bug in medseg_bench and is shown with its traceback and a line saying so.
"""

from __future__ import annotations

__all__ = ["InputError", "InvalidDatasetError"]


class InputError(Exception):
    """Bad input: the message names the file and the problem."""


class InvalidDatasetError(InputError):
    """A raw dataset failed validation; ``problems`` holds every problem found (one line each)."""

    def __init__(self, folder, problems):
        self.folder = folder
        self.problems = list(problems)
        lines = [f"{folder}: {len(self.problems)} problem(s) found (run `medseg-bench datasets check` for the "
                 f"same list; --no-verify skips this check)"]
        lines += [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))

    def __reduce__(self):  # picklable across process pools
        return (type(self), (self.folder, self.problems))
