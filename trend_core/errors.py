"""The one exception type the engine raises for bad user input.

Its message is a single sentence meant for a person; the CLI prints it and exits with status 2, the
dashboard shows it as a message. Anything else escaping the engine is a bug.
"""


class TrendError(ValueError):
    """A user-facing error: one clear sentence, no traceback needed."""
