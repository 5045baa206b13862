"""The one exception type irlib raises for bad user input."""


class IrlibInputError(ValueError):
    """Bad input: the message names the file or argument at fault and says how to fix it."""
