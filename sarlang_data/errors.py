"""The sarlang-data exception family.

Every message names the value that was wrong, the likely cause and the fix, so a user
can act on it without reading the source.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

# user:password@ in any URL of a text, and the values of secret query parameters (presigned
# S3 URLs, tokens); Hub tokens and Authorization header values wherever they appear
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@?#'\"<>]*@")
_SECRET_QUERY = re.compile(
    r"(?i)([?&](?:[\w.-]*signature|[\w.-]*credential|[\w.-]*security-token|sig|token|"
    r"access_token|api_?key|key|password|secret)=)[^&#\s'\"<>]*")
_TOKENS = re.compile(r"\bhf_[A-Za-z0-9]{8,}")
_AUTH_HEADER = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?(?:bearer|basic|token)?\s*)"
                          r"[^\s'\",}]+")


def redact(text: object) -> str:
    """Return ``text`` with every secret it holds blanked by ``***``.

    Blanked: the user info of every URL (``https://user:password@host`` ->
    ``https://***@host``), the values of secret query parameters (``X-Amz-Signature``,
    ``X-Amz-Credential``, ``token``, ``key``, ``sig`` ...), Hub tokens (``hf_...``) and
    ``Authorization`` header values. Every error of this package passes its message through
    here, and so do the log records of the package and of the libraries it reads through
    (see :func:`sarlang_data.remote.guard_logs`).

    Args:
        text: a URL, a message, or anything whose ``str`` is shown.

    Returns:
        The text with the secrets replaced.

    """
    out = str(text)
    if "://" in out:
        out = _USERINFO.sub(r"\1***@", out)
    if "=" in out:
        out = _SECRET_QUERY.sub(r"\1***", out)
    if "hf_" in out:
        out = _TOKENS.sub("hf_***", out)
    if "uthorization" in out or "UTHORIZATION" in out:
        out = _AUTH_HEADER.sub(r"\1***", out)
    return out


class SarlangError(Exception):
    """Base class of every error this package raises on purpose.

    Its message never carries a secret: string arguments pass through :func:`redact`.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


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
    """A shard is corrupt or cannot be read.

    Missing, refused, truncated, a bad header or zstd frame, an incomplete sample, a member
    that does not match its hash or does not decode.
    """

    def __init__(self, url: str, offset: int, cause: str, fix: str = "") -> None:
        self.url = redact(url)
        self.offset = offset
        self.cause = cause
        msg = (f"shard {url!r} at byte {offset}: {cause}" if offset >= 0
               else f"shard {url!r}: {cause}")
        if fix:
            msg += f"; {fix}"
        super().__init__(msg)


class RangeError(SarlangError):
    """A server did not honour an HTTP Range request (status or length mismatch)."""


class RemoteError(SarlangError, ConnectionError):
    """A remote place (the Hub or a mirror of it, an HTTP server) cannot be reached or fails."""


class ConfigError(SarlangError, ValueError):
    """An unknown config, city, tier, source, split or task name."""


class ArgumentError(SarlangError, TypeError):
    """An unknown keyword argument (the message names the closest valid one)."""


class StorageError(BuildError, OSError):
    """A write failed for want of space (disk full, quota, file size limit)."""


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
