"""User-facing errors: raised for bad input, printed as one line by the CLIs (exit 2)."""
import functools
import sys


class UserError(Exception):
    """A mistake in what the user asked for (bad path, bad data, bad config). Never a bug."""


def one_line_errors(interrupted: str = "interrupted"):
    """Decorate a CLI's main(): a UserError prints `error: ...` and returns 2, Ctrl-C prints one line and 130."""
    def wrap(main):
        @functools.wraps(main)
        def guarded(*args, **kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except UserError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                print(interrupted, file=sys.stderr)
                return 130
        return guarded
    return wrap
