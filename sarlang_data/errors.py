"""The sarlang-data exception family.

Every message names the value that was wrong, the likely cause and the fix, so a user
can act on it without reading the source.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SarlangError(Exception):
    """Base class of every error this package raises on purpose."""


class ReleaseError(SarlangError):
    """The authors' release layout or its text files cannot be used as given."""


class ColumnError(ReleaseError):
    """The columns of a text file cannot be identified."""


class BuildError(SarlangError):
    """A build cannot proceed (too many rejects, duplicate keys, bad options)."""


class ManifestError(SarlangError):
    """A dataset root has no usable manifest (missing, newer format, inconsistent)."""


class VerifyError(SarlangError):
    """A dataset root does not match its manifest or index."""


class ShardError(SarlangError):
    """A shard is corrupt: truncated, bad header, bad zstd frame, incomplete sample."""

    def __init__(self, url: str, offset: int, cause: str, fix: str = "") -> None:
        self.url = url
        self.offset = offset
        self.cause = cause
        msg = f"shard {url!r} at byte {offset}: {cause}"
        if fix:
            msg += f"; {fix}"
        super().__init__(msg)


class RangeError(SarlangError):
    """A server did not honour an HTTP Range request (status or length mismatch)."""


class RemoteError(SarlangError, ConnectionError):
    """A remote place (the Hub or a mirror of it, an HTTP server) cannot be reached or fails."""


class ConfigError(SarlangError, ValueError):
    """An unknown config, city, tier, source, split or task name."""


def closest_first(value: str, valid: Iterable[str]) -> list[str]:
    """Return ``valid`` sorted with the names closest to ``value`` first.

    Args:
        value: the name the user gave.
        valid: every accepted name.

    Returns:
        The accepted names, best matches first, the rest in their given order.
    """
    valid = list(valid)
    near = difflib.get_close_matches(value, valid, n=len(valid), cutoff=0.0)
    return near


def unknown_name(kind: str, value: str, valid: Iterable[str], argument: str) -> ConfigError:
    """Build the error for a name that is not in a catalogue.

    Args:
        kind: what the name is of ("config", "city", ...).
        value: the name given.
        valid: every accepted name.
        argument: the argument or option the name came from.

    Returns:
        A ConfigError listing the valid names, closest first.
    """
    ordered = closest_first(value, valid)
    shown = ", ".join(ordered[:40]) + (" ..." if len(ordered) > 40 else "")
    return ConfigError(
        f"{argument}={value!r}: unknown {kind}; valid {kind} names (closest first): {shown}"
    )
