"""A command's output into a pipe whose reader may go away first (`status | head`): that is not an
error, and gets no traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence


def run_for_a_pipe(main: Callable[[Sequence[str]], int], argv: Sequence[str]) -> int:
    """`main(argv)`, ending with exit code 0 and nothing on stderr when stdout's reader left."""
    try:
        return main(argv)
    except BrokenPipeError:
        # Python flushes stdout once more at exit: point it where that cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
