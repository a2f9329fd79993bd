"""User-facing errors: a short message, no traceback unless HYDRA_FULL_ERROR=1."""

import difflib


class DlrunError(Exception):
    """A problem the user can fix that the run met as it went (an unreadable file, divergence):
    exit 1. What the command line or config asks for that cannot be (an unknown key or value, a
    file or directory named there that is not there) is a ConfigError: exit 2."""

    exit_code = 1
    status = "failed"  # what summary.json records for a run that stops with it


class ConfigError(DlrunError):
    """The composed config is invalid, or names a file that is not there; raised before any work is done."""

    exit_code = 2


def first_line(exc):
    """The first line of an exception's message (its type when it has none): what summary.json records."""
    return (str(exc) or type(exc).__name__).splitlines()[0]


def os_reason(exc):
    """An OSError's reason as a phrase: 'no space left on device'."""
    return (exc.strerror or str(exc)).lower()


def closest(word, choices):
    """The choice closest to `word` (one that begins with it first), or None; case is ignored
    (`model=CNN` finds `cnn`)."""
    by_folded = {str(c).lower(): str(c) for c in sorted(choices, key=str)}
    word = str(word).lower()
    close = ([c for c in by_folded if c.startswith(word)] if word else []) or \
        difflib.get_close_matches(word, list(by_folded), n=1, cutoff=0.6)
    return by_folded[close[0]] if close else None


def did_you_mean(word, choices, prefix=""):
    """' Did you mean X?' for the closest choice, or ''."""
    close = closest(word, choices)
    return f" Did you mean '{prefix}{close}'?" if close else ""


def unknown_choice(key, value, choices):
    """The message for a value that is not one of `choices`."""
    listed = ", ".join(sorted(str(c) for c in choices))
    if value == "":
        return f"{key}= gives no value. Choose one of: {listed}."
    return f"{key}={value!s} is not known.{did_you_mean(value, choices)} Choose one of: {listed}."
