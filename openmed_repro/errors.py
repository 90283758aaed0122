"""The one exception type of the package: every message names the file, line or parameter at fault."""


class OpenMedError(Exception):
    """Bad input or a failed precondition, explained so that the user can fix it."""
