"""User-facing failures: one line naming the problem and the fix, and an exit code.

Entry points run their `main` through `run_main`, which prints `error: <message>` to stderr and
exits 2 for usage errors, 1 for runtime failures and 130 for Ctrl-C; `--debug` shows the traceback.
`-h` / `--help` prints the command's usage and exits 0.
"""

import os
import sys
import traceback


class UsageError(Exception):
    """Bad command-line input or configuration (exit code 2)."""

    exit_code = 2


class RuntimeFailure(Exception):
    """Something went wrong while running: missing data, a damaged checkpoint (exit code 1)."""

    exit_code = 1


def error_line(error: Exception) -> str:
    """`error: <message>` as one line, whatever user text (newlines, control characters) the
    message quotes."""
    message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(error))
    return f"error: {message}"


def run_main(main, argv: list[str] | None = None, usage=None) -> None:
    """Run `main(argv)`, turning our errors into one line on stderr and an exit code; with
    `-h` or `--help`, print `usage()` instead."""
    argv = sys.argv[1:] if argv is None else argv
    if usage is not None and ("-h" in argv or "--help" in argv):
        try:
            print(usage(), flush=True)
        except BrokenPipeError:  # `--help | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    try:
        main(argv)
    except (UsageError, RuntimeFailure) as error:
        if debug:
            traceback.print_exc()
        print(error_line(error), file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
