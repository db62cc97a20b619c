"""Accounts in a real SQLite file: roles, grants, argon2 passwords, hashed API keys, the
`rag user` commands; and LDAP login against a real slapd started by the test."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port

from rag.config import Settings
from rag.errors import AuthError, ConfigError, NotFoundError
from rag.org.accounts import Accounts, hash_key
from rag.org.kbs import KnowledgeBases

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path) -> Settings:
    s = Settings(home=str(tmp_path / "home"), index_dir="")
    for kb in ("plan", "hr", "finance"):
        KnowledgeBases(s).create(kb)
    return s


def test_roles_grants_and_what_each_caller_may_read(home):
    a = Accounts(home)
    a.add("li", "reader", ["plan"])
    a.add("wang", "editor", ["hr", "finance"])
    a.add("boss", "admin")
    li, wang, boss = (a.caller(n) for n in ("li", "wang", "boss"))
    assert li.readable(["plan", "hr", "finance"]) == ["plan"]
    assert not li.may_edit("plan")
    assert wang.readable(["plan", "hr", "finance"]) == ["hr", "finance"]
    assert wang.may_edit("hr") and not wang.may_edit("plan")
    assert boss.readable(["plan", "hr", "finance"]) == ["plan", "hr", "finance"]
    assert boss.may_edit("plan")
    a.grant("li", ["hr"])
    assert a.caller("li").readable(["plan", "hr", "finance"]) == ["plan", "hr"]
    a.revoke("li", ["plan"])
    assert a.get("li").kbs == ("hr",)
    with pytest.raises(NotFoundError, match="没有名为“nope”的知识库"):
        a.grant("li", ["nope"])
    with pytest.raises(ConfigError, match="已存在"):
        a.add("li", "reader")
    with pytest.raises(ConfigError, match="角色"):
        a.add("zhao", "owner")


def test_api_keys_are_stored_hashed_and_identify_their_account(home):
    a = Accounts(home)
    key = a.add("li", "reader", ["plan"])
    assert key.startswith("rag-") and len(key) > 40
    assert a.caller_for_key(key).name == "li"
    assert a.caller_for_key(key + "x") is None
    second = a.new_key("li")
    assert second != key and a.caller_for_key(second).name == "li"
    db = (Path(home.home) / "org.db").read_bytes()
    assert key.encode() not in db and second.encode() not in db
    with sqlite3.connect(Path(home.home) / "org.db") as con:
        stored = {r[0] for r in con.execute("SELECT key_hash FROM api_keys")}
    assert stored == {hash_key(key), hash_key(second)}
    a.remove("li")
    assert a.caller_for_key(key) is None


def test_passwords_are_argon2_hashes_and_a_wrong_one_says_nothing_more(home):
    from argon2 import PasswordHasher

    a = Accounts(home)
    a.add("li", "reader", ["plan"], password="correct horse")
    with sqlite3.connect(Path(home.home) / "org.db") as con:
        stored = con.execute("SELECT password_hash FROM users WHERE name='li'").fetchone()[0]
    assert stored.startswith("$argon2id$") and PasswordHasher().verify(stored, "correct horse")
    assert a.login("li", "correct horse").name == "li"
    for name, pw in (("li", "wrong horse"), ("nobody", "correct horse")):
        with pytest.raises(AuthError) as e:
            a.login(name, pw)
        assert str(e.value) == "用户名或密码不正确。"
    with pytest.raises(ConfigError, match="太短"):
        a.passwd("li", "short")
    a.passwd("li", "battery staple")
    assert a.login("li", "battery staple").name == "li"


def _cli(*argv, stdin: str = "", home: Settings) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rag.serve.cli", *argv, "--home", home.home],
        input=stdin, capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )  # fmt: skip


def test_rag_user_commands(home):
    r = _cli("user", "add", "li", "--role", "reader", "--kb", "plan", "--kb", "hr",
             "--password-stdin", stdin="a good password\n", home=home)  # fmt: skip
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip().splitlines()[-1]  # the key is the last line
    a = Accounts(home)
    assert a.caller_for_key(key).name == "li" and a.login("li", "a good password")
    r = _cli("user", "grant", "li", "--kb", "finance", home=home)
    assert r.returncode == 0 and "finance" in r.stdout
    r = _cli("user", "revoke", "li", "--kb", "plan", home=home)
    assert r.returncode == 0
    assert a.get("li").kbs == ("finance", "hr")
    r = _cli("user", "passwd", "li", stdin="another password\n", home=home)
    assert r.returncode == 0, r.stderr
    assert a.login("li", "another password").name == "li"
    r = _cli("user", "list", home=home)
    assert r.returncode == 0 and "li\treader\t知识库：finance、hr\t登录：密码" in r.stdout
    r = _cli("user", "grant", "nobody", "--kb", "hr", home=home)
    assert r.returncode == 2 and "没有名为“nobody”的用户" in r.stderr
    assert "Traceback" not in r.stderr


# ------------------------------------------------------------------ LDAP, a real slapd
SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SUFFIX = "dc=example,dc=org"


@contextlib.contextmanager
def _slapd(tmp: Path):
    """A slapd on a free loopback port with one user, uid=zhang (password 'zhang-pass')."""
    db = tmp / "db"
    db.mkdir(parents=True)
    conf = tmp / "slapd.conf"
    conf.write_text(
        "include /etc/ldap/schema/core.schema\n"
        "include /etc/ldap/schema/cosine.schema\n"
        "include /etc/ldap/schema/inetorgperson.schema\n"
        "modulepath /usr/lib/ldap\nmoduleload back_mdb\n"
        f"pidfile {tmp}/slapd.pid\n"
        "database mdb\n"
        f'suffix "{SUFFIX}"\nrootdn "cn=admin,{SUFFIX}"\nrootpw admin-pass\n'
        f"directory {db}\n"
    )
    pw = subprocess.run(["slappasswd", "-s", "zhang-pass"], capture_output=True, text=True,
                        check=True).stdout.strip()  # fmt: skip
    ldif = tmp / "users.ldif"
    ldif.write_text(
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n"
        f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n"
        f"dn: uid=zhang,ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: zhang\n"
        f"cn: Zhang San\nsn: Zhang\nuserPassword: {pw}\n"
    )
    subprocess.run(["slapadd", "-f", str(conf), "-l", str(ldif)], check=True,
                   capture_output=True)  # fmt: skip
    port = free_port()
    url = f"ldap://127.0.0.1:{port}"
    log = open(tmp / "slapd.log", "w")
    proc = subprocess.Popen([SLAPD, "-f", str(conf), "-h", url + "/", "-d", "0"],
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        import socket

        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert proc.poll() is None, (tmp / "slapd.log").read_text()
            assert time.monotonic() < deadline, "slapd did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.mark.skipif(
    not Path(SLAPD).is_file(), reason="Debian's slapd is not installed (apt-get install slapd)"
)
def test_ldap_login_binds_against_a_real_slapd_and_creates_the_account(tmp_path, home):
    from rag.org.ldap_auth import login

    with _slapd(tmp_path / "ldap") as url:
        s = home.replace(ldap_url=url, ldap_user_dn="uid={name},ou=people," + SUFFIX)
        caller = login(s, "zhang", "zhang-pass")
        assert (caller.name, caller.role, caller.kbs) == ("zhang", "reader", frozenset())
        user = Accounts(s).get("zhang")
        assert user.source == "ldap" and not user.has_password  # the password is never kept
        Accounts(s).grant("zhang", ["hr"])
        assert login(s, "zhang", "zhang-pass").readable(["plan", "hr"]) == ["hr"]
        for name, pw in (("zhang", "wrong"), ("zhang", ""), ("nobody", "zhang-pass"),
                         ("zhang,ou=people", "zhang-pass")):  # fmt: skip
            with pytest.raises(AuthError, match="用户名或密码不正确"):
                login(s, name, pw)
        # the chat page's login (the checker Gradio's POST /login awaits) takes it too
        import asyncio

        from rag.serve.limits import account_login
        from rag.serve.ui.login import login_page

        check = account_login(s, 0.0)
        assert asyncio.run(check("zhang", "zhang-pass")) is True
        assert asyncio.run(check("zhang", "wrong")) is False
        assert "LDAP" in login_page(ldap=bool(s.ldap_url)) and "LDAP" not in login_page()
    # the directory gone: a clear refusal, not a traceback or a way in
    with pytest.raises(AuthError, match="无法连接 LDAP"):
        login(s.replace(ldap_timeout_s=1.0), "zhang", "zhang-pass")
