"""The one error type of the artifact store."""

from __future__ import annotations


class ArtifactError(ValueError):
    """A push/pull/resolve that cannot be done as asked: bad URI, missing bucket or object,
    no credentials, unreachable endpoint, corrupt or partial object, hostile key, a local
    model that fails its manifest. The message is one line naming the object and the cause.

    A ValueError like ``ManifestError`` and ``DatasetError``, so CLIs and services that
    report bad input as one line (``except ValueError``) report this the same way.
    """
