"""The one exception type for mistakes a user can fix."""


class UserError(ValueError):
    """A mistake in the user's input or options; the message names the culprit and the fix.

    The CLI prints it as one line and exits with code 2. Bugs are not UserErrors and keep
    their tracebacks.
    """


class TrainingInterrupted(Exception):
    """Training was stopped (Ctrl-C); the message names the run folder and the command that resumes it."""
