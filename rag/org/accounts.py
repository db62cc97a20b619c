"""Accounts and roles: who may read and who may change which knowledge bases.

- admin: every knowledge base, every account;
- editor: reads and changes the documents of the knowledge bases granted;
- reader: asks the knowledge bases granted.

Passwords are kept as argon2id hashes (argon2-cffi). An API key is 32 random bytes
shown once, when it is made; only its SHA-256 is stored (a key is random, so a slow
hash adds nothing, and each request can be checked in microseconds).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
from contextlib import closing
from dataclasses import dataclass

from rag.config import ROLES, Settings
from rag.errors import AuthError, ConfigError, NotFoundError
from rag.org.db import now
from rag.org.kbs import KnowledgeBases

KEY_PREFIX = "rag-"  # tells a rag key from other secrets in a config file or a log
_NAME = re.compile(r"[\w.\-@]{1,64}")
MIN_PASSWORD_CHARS = 8


@dataclass(frozen=True)
class Caller:
    """Who is asking, and the knowledge bases they may read (None: all of them)."""

    name: str
    role: str
    kbs: frozenset[str] | None

    def may_read(self, kb: str) -> bool:
        return self.kbs is None or kb in self.kbs

    def may_edit(self, kb: str) -> bool:
        return self.role == "admin" or (self.role == "editor" and self.may_read(kb))

    def readable(self, names) -> list[str]:
        """`names` less those the caller may not read, in order."""
        return [n for n in names if self.may_read(n)]

    def __str__(self) -> str:  # how logs name the caller
        return self.name


# the operator at the terminal, and a service key (`rag serve --api-key`): everything
OPERATOR = Caller("operator", "admin", None)


@dataclass(frozen=True)
class User:
    name: str
    role: str
    kbs: tuple[str, ...]
    has_password: bool
    keys: int
    source: str
    created_at: str

    @property
    def caller(self) -> Caller:
        return Caller(self.name, self.role, None if self.role == "admin" else frozenset(self.kbs))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"角色“{role}”不存在：可选 {'、'.join(ROLES)}。")
    return role


def user_not_found(name: str) -> NotFoundError:
    return NotFoundError(f"没有名为“{name[:64]}”的用户。")


class Accounts:
    """The accounts in HOME/org.db."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.kbs = KnowledgeBases(settings)

    def _con(self) -> sqlite3.Connection:
        return self.kbs.connect()

    # -- reading -----------------------------------------------------------------------
    def get(self, name: str) -> User:
        with closing(self._con()) as con:
            row = con.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise user_not_found(name)
            return self._user(con, row)

    def list(self) -> list[User]:
        with closing(self._con()) as con:
            rows = con.execute("SELECT * FROM users ORDER BY name").fetchall()
            return [self._user(con, r) for r in rows]

    @staticmethod
    def _user(con: sqlite3.Connection, row: sqlite3.Row) -> User:
        kbs = [
            r[0]
            for r in con.execute("SELECT kb FROM grants WHERE user = ? ORDER BY kb", (row["name"],))
        ]
        keys = con.execute(
            "SELECT COUNT(*) FROM api_keys WHERE user = ?", (row["name"],)
        ).fetchone()[0]
        return User(
            row["name"], row["role"], tuple(kbs), row["password_hash"] is not None, keys,
            row["source"], row["created_at"],
        )  # fmt: skip

    def caller(self, name: str) -> Caller:
        return self.get(name).caller

    def caller_for_key(self, key: str) -> Caller | None:
        """The account a key belongs to; None for a key no account holds."""
        with closing(self._con()) as con:
            row = con.execute(
                "SELECT user FROM api_keys WHERE key_hash = ?", (hash_key(key),)
            ).fetchone()
            if row is None:
                return None
            user = con.execute("SELECT * FROM users WHERE name = ?", (row[0],)).fetchone()
            return self._user(con, user).caller

    # -- changing ----------------------------------------------------------------------
    def add(
        self, name: str, role: str, kbs=(), password: str | None = None, source: str = "local"
    ) -> str:
        """Create the account; return its first API key (shown once, stored hashed)."""
        if not _NAME.fullmatch(name or ""):
            raise ConfigError(
                f"用户名“{name[:64]}”不可用：只能由 1–64 个汉字、字母、数字或 . - _ @ 组成。"
            )
        check_role(role)
        pw = self._hash_password(password) if password is not None else None
        with closing(self._con()) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute(
                    "INSERT INTO users (name, role, password_hash, source, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (name, role, pw, source, now()),
                )
            except sqlite3.IntegrityError:
                con.execute("ROLLBACK")
                raise ConfigError(f"用户“{name}”已存在。") from None
            self._grant(con, name, kbs)
            key = self._new_key(con, name)
            con.execute("COMMIT")
        return key

    def _grant(self, con: sqlite3.Connection, name: str, kbs) -> None:
        known = {r[0] for r in con.execute("SELECT name FROM kbs")}
        for kb in kbs:
            if kb not in known:
                con.execute("ROLLBACK")
                raise NotFoundError(
                    f"没有名为“{kb[:40]}”的知识库；先运行 rag kb create {kb[:40]}。"
                )
            con.execute("INSERT OR IGNORE INTO grants (user, kb) VALUES (?, ?)", (name, kb))

    @staticmethod
    def _new_key(con: sqlite3.Connection, name: str) -> str:
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        con.execute(
            "INSERT INTO api_keys (key_hash, user, created_at) VALUES (?, ?, ?)",
            (hash_key(key), name, now()),
        )
        return key

    def grant(self, name: str, kbs) -> User:
        self.get(name)
        with closing(self._con()) as con:
            con.execute("BEGIN IMMEDIATE")
            self._grant(con, name, kbs)
            con.execute("COMMIT")
        return self.get(name)

    def revoke(self, name: str, kbs) -> User:
        self.get(name)
        with closing(self._con()) as con:
            con.executemany(
                "DELETE FROM grants WHERE user = ? AND kb = ?", [(name, kb) for kb in kbs]
            )
        return self.get(name)

    def set_role(self, name: str, role: str) -> User:
        check_role(role)
        self.get(name)
        with closing(self._con()) as con:
            con.execute("UPDATE users SET role = ? WHERE name = ?", (role, name))
        return self.get(name)

    def new_key(self, name: str) -> str:
        """Another API key for the account (the old ones keep working until removed)."""
        self.get(name)
        with closing(self._con()) as con:
            return self._new_key(con, name)

    def remove(self, name: str) -> None:
        self.get(name)
        with closing(self._con()) as con:
            con.execute("DELETE FROM users WHERE name = ?", (name,))

    # -- passwords ---------------------------------------------------------------------
    @staticmethod
    def _hash_password(password: str) -> str:
        if len(password) < MIN_PASSWORD_CHARS:
            raise ConfigError(f"密码太短：至少需要 {MIN_PASSWORD_CHARS} 个字符。")
        return _hasher().hash(password)

    def passwd(self, name: str, password: str) -> None:
        self.get(name)
        pw = self._hash_password(password)
        with closing(self._con()) as con:
            con.execute("UPDATE users SET password_hash = ? WHERE name = ?", (pw, name))

    def login(self, name: str, password: str) -> Caller:
        """The caller for a correct local password; AuthError otherwise (never saying
        whether the name or the password was wrong)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        wrong = AuthError("用户名或密码不正确。")
        with closing(self._con()) as con:
            row = con.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        if row is None or row["password_hash"] is None:
            _hasher().hash(password or "-")  # as slow as a wrong password: no name oracle
            raise wrong
        ph = _hasher()
        try:
            ph.verify(row["password_hash"], password)
        except (VerificationError, InvalidHashError):
            raise wrong from None
        if ph.check_needs_rehash(row["password_hash"]):
            with closing(self._con()) as con:
                con.execute(
                    "UPDATE users SET password_hash = ? WHERE name = ?", (ph.hash(password), name)
                )
        return self.caller(name)
