"""Exceptions that name the culprit (file, key, URL or value) so a failed run says what to fix."""


class FreqBackdoorError(Exception):
    """Base class of every error this library raises on bad input."""


class DataError(FreqBackdoorError):
    """A dataset, image or array file is missing, unreadable or malformed."""


class ChecksumError(DataError):
    """A downloaded or supplied file does not match its expected sha256."""


class DownloadError(DataError):
    """A URL could not be fetched."""


class ConfigError(FreqBackdoorError):
    """A configuration value is missing or inconsistent beyond what the schema checks."""
