"""The one error type the CLI turns into a clear line and exit code 2."""


class HardeningError(Exception):
    """Bad input or an infrastructure failure, with a message meant for a person."""
