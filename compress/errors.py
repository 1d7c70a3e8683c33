"""User-facing errors: raised for bad input, printed as one line by the CLIs (exit 2)."""


class UserError(Exception):
    """A mistake in what the user asked for (bad path, bad data, bad config). Never a bug."""
