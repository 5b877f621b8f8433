"""Errors a user can cause; each message says what went wrong and what to do about it."""


class EmbedStudioError(Exception):
    """Base for user-facing errors: the UI and the CLI show the message, nothing crashes."""


class UserInputError(EmbedStudioError):
    """A value typed into a form or on the command line is malformed (an LR schedule, a size...)."""


class DatasetError(EmbedStudioError):
    """A dataset folder is missing, empty or unreadable."""


class CorruptImageError(DatasetError):
    """An image file cannot be decoded."""


class FileFormatError(EmbedStudioError):
    """A file is not the embedding/hypernetwork/model file it should be."""


class NetworkError(EmbedStudioError):
    """A server could not be reached or answered with an error."""


class Cancelled(EmbedStudioError):
    """A job was cancelled by the user."""
