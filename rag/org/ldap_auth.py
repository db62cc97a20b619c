"""Optional LDAP login (ldap3): a name and password are right when the directory lets
them bind as `Settings.ldap_user_dn` with the name filled in.

An account that binds for the first time is created with `ldap_default_role` and no
knowledge bases; an admin grants them (`rag user grant`). The password is never kept.
"""

from __future__ import annotations

import math

from rag.config import Settings
from rag.errors import AuthError, NotFoundError
from rag.org.accounts import Accounts, Caller

WRONG = "用户名或密码不正确。"


def ldap_bind(settings: Settings, name: str, password: str) -> bool:
    """Whether the directory accepts `password` for `name` (False for a wrong one)."""
    from ldap3 import Connection, Server
    from ldap3.core.exceptions import LDAPException
    from ldap3.utils.dn import escape_rdn

    if not settings.ldap_url:
        raise AuthError("没有配置 LDAP 登录（设置文件中的 ldap_url）。")
    if not name or not password:  # an empty password would be an anonymous bind: refuse
        return False
    dn = settings.ldap_user_dn.format(name=escape_rdn(name))
    timeout = max(1, math.ceil(settings.ldap_timeout_s))  # ldap3 packs it as an integer
    server = Server(settings.ldap_url, connect_timeout=timeout)
    try:
        conn = Connection(server, user=dn, password=password, receive_timeout=timeout)
        if settings.ldap_start_tls:
            conn.open()
            conn.start_tls()
        ok = bool(conn.bind())
        conn.unbind()
        return ok
    except LDAPException as e:
        raise AuthError(f"无法连接 LDAP 服务器（{type(e).__name__}），请稍后再试。") from None


def login(settings: Settings, name: str, password: str) -> Caller:
    """The caller for a name and password: a local password first, then LDAP when it is
    configured. AuthError for a wrong name or password, saying neither which."""
    accounts = Accounts(settings)
    try:
        user = accounts.get(name)
    except NotFoundError:
        user = None
    if user is not None and (user.has_password or not settings.ldap_url):
        return accounts.login(name, password)
    if not settings.ldap_url:
        return accounts.login(name, password)  # as slow as a wrong password
    if not ldap_bind(settings, name, password):
        raise AuthError(WRONG)
    if user is None:
        accounts.add(name, settings.ldap_default_role, source="ldap")
    return accounts.caller(name)
