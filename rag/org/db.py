"""Opening the home's SQLite files: WAL (readers never wait for a writer), foreign keys
on, and a busy timeout so concurrent requests queue instead of failing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

BUSY_TIMEOUT_S = 30.0


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """A connection to the database at `path`, created with `schema` when new.

    One connection per call: sqlite3 connections are not shared between threads, and
    opening one costs well under a millisecond.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    con.row_factory = sqlite3.Row
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA foreign_keys=ON")
    con.executescript(schema)
    return con


# The knowledge bases, the accounts and who may read what: one file, so renaming or
# deleting a knowledge base updates its grants in the same transaction.
ORG_SCHEMA = """
CREATE TABLE IF NOT EXISTS kbs (
    name TEXT PRIMARY KEY,
    folder TEXT NOT NULL UNIQUE,      -- relative to the home
    embed_model TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('reader', 'editor', 'admin')),
    password_hash TEXT,               -- argon2id; NULL: no password login (LDAP, key only)
    source TEXT NOT NULL DEFAULT 'local',
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    user TEXT NOT NULL REFERENCES users(name) ON UPDATE CASCADE ON DELETE CASCADE,
    kb TEXT NOT NULL REFERENCES kbs(name) ON UPDATE CASCADE ON DELETE CASCADE,
    PRIMARY KEY (user, kb)
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash TEXT PRIMARY KEY,        -- sha256 of the key: the key itself is never stored
    user TEXT NOT NULL REFERENCES users(name) ON UPDATE CASCADE ON DELETE CASCADE,
    created_at TEXT NOT NULL
);
"""


def org_db(home: Path) -> sqlite3.Connection:
    """The home's accounts and knowledge-base registry (HOME/org.db)."""
    return connect(home / "org.db", ORG_SCHEMA)


def now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
