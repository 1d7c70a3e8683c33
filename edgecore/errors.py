"""User-facing errors: raised for bad input, printed as one line by the CLIs (exit 2)."""
import functools
import sys


class UserError(Exception):
    """A mistake in what the user asked for (bad path, bad data, bad config). Never a bug."""


def os_error_line(e: OSError) -> str:
    """`<reason>: <file>` for a failed read or write (full disk, read-only or forbidden folder)."""
    where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    return f"{e.strerror or e}" + (f": {where}" if where else "")


def _error(line: str) -> None:
    """Print `line` on a line of its own: a progress bar cut short by the error is closed first, or the error
    would be glued to the end of its unfinished line."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()
    print(line, file=sys.stderr)


def one_line_errors(interrupted: str = "interrupted"):
    """Decorate a CLI's main(): a UserError or an OSError (ENOSPC, EACCES, EROFS, ...) prints `error: ...` and
    returns 2, Ctrl-C prints one line and 130. Writes are atomic, so a failed one leaves no partial file."""
    def wrap(main):
        @functools.wraps(main)
        def guarded(*args, **kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except UserError as e:
                _error(f"error: {e}")
                return 2
            except OSError as e:
                _error(f"error: {os_error_line(e)}")
                return 2
            except KeyboardInterrupt:
                _error(interrupted)
                return 130
        return guarded
    return wrap
