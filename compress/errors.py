"""User-facing errors: raised for bad input, printed as one line by the CLIs (exit 2)."""
import functools
import sys


class UserError(Exception):
    """A mistake in what the user asked for (bad path, bad data, bad config). Never a bug."""


def os_error_line(e: OSError) -> str:
    """`<reason>: <file>` for a failed read or write (full disk, read-only or forbidden folder)."""
    where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    return f"{e.strerror or e}" + (f": {where}" if where else "")


def one_line_errors(interrupted: str = "interrupted"):
    """Decorate a CLI's main(): a UserError or an OSError (ENOSPC, EACCES, EROFS, ...) prints `error: ...` and
    returns 2, Ctrl-C prints one line and 130. Writes are atomic, so a failed one leaves no partial file."""
    def wrap(main):
        @functools.wraps(main)
        def guarded(*args, **kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except UserError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            except OSError as e:
                print(f"error: {os_error_line(e)}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                print(interrupted, file=sys.stderr)
                return 130
        return guarded
    return wrap
