"""The few narrow exception types. Each message names the thing, the reason and the fix."""

from __future__ import annotations


class RagError(Exception):
    """Base class: anything the CLI reports as one clear line instead of a traceback."""


class ConfigError(RagError, ValueError):
    """A setting or argument is wrong."""


class LoadError(RagError):
    """A file could not be ingested. `path` and `reason` are shown to the user as one line."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class IndexStoreError(RagError):
    """The index is missing, locked, from another schema, or damaged."""


class IndexLockedError(IndexStoreError):
    """Another process is writing the index and did not finish within the wait."""


class IndexSchemaError(IndexStoreError):
    """The index was written by another version of rag; `rag ingest` rebuilds it."""


class ModelError(RagError):
    """An embedding model or LLM could not be loaded or called."""


class NotFoundError(RagError):
    """A knowledge base, account or conversation that does not exist, or that the caller
    may not see: both answer alike, so a name reveals nothing (HTTP 404, Dify 2001)."""


class ForbiddenError(RagError):
    """The caller is known but its role does not allow the action (HTTP 403)."""


class AuthError(RagError):
    """A login or key that is wrong: which part was wrong is never said."""
