"""User-facing errors: a short message, no traceback unless HYDRA_FULL_ERROR=1."""

import difflib


class DlrunError(Exception):
    """A problem the user can fix (bad config, missing data, unusable file)."""


class ConfigError(DlrunError):
    """The composed config is invalid; raised before any work is done."""


def did_you_mean(word, choices):
    """' Did you mean X?' for the closest choice, or ''."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_choice(key, value, choices):
    """The message for a value that is not one of `choices`."""
    listed = ", ".join(sorted(str(c) for c in choices))
    return f"{key}={value!s} is not known.{did_you_mean(value, choices)} Choose one of: {listed}."
