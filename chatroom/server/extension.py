"""The answers to the protocol extension's requests (after HELLO): registering a name,
logging in with a password, changing it, reading history.

Functions of a :class:`~.session.Session`, kept apart so that the session's module stays
about one connection's frames, and this one about accounts. They use the session's name,
``registered`` flag, directory, accounts and address.
"""

import logging
from typing import TYPE_CHECKING

from ..codec import encode, history_entry
from ..protocol import (
    MAX_BODY,
    MAX_HISTORY_COUNT,
    Authenticate,
    ChangePassword,
    HistoryPage,
    Register,
    Response,
    Status,
    is_valid_password,
    is_valid_username,
)
from .logs import fields
from .store import StoreUnavailable

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("chatroom.server.session")

OK = encode(Response(Status.OK))
FAILURE = encode(Response(Status.FAILURE))


def answer(session: "Session", event) -> bytes:
    """The reply to an extension request from a session that said HELLO."""
    kind = type(event)
    if kind is Authenticate:
        return _authenticate(session, event.name, event.password)
    if kind is Register:
        return _register(session, event.name, event.password)
    if kind is ChangePassword:
        return _change_password(session, event.old, event.new)
    return _history(session, event.peer, event.count, event.before)


def _authenticate(session: "Session", name, password):
    accounts = session.accounts
    assert accounts is not None
    if session.name is not None or not is_valid_username(name) or not is_valid_password(password):
        return FAILURE
    if not accounts.check_password(name, password, session.host):
        log.info("failed password for %s (%s)", name, session.peer)
        return FAILURE
    if not session.directory.claim(name, session):
        return FAILURE
    session.name = name
    session.registered = True
    log.info(
        "login %s (%s, registered)",
        name,
        session.peer,
        extra=fields("login", name=name, peer=session.peer, registered=True),
    )
    # Messages kept while the user was away come first; live ones wait behind them.
    held: list[bytes] = []
    session.held = held
    try:
        stored = accounts.take_offline(name)
    except StoreUnavailable:
        stored = []  # they stay kept, for the next login
    finally:
        session.held = None
    return b"".join([OK, *map(encode, stored), *held])


def _register(session: "Session", name, password):
    accounts = session.accounts
    assert accounts is not None
    if not is_valid_username(name) or not is_valid_password(password) or session.name not in (None, name):
        return FAILURE
    claimed_now = session.name is None
    if claimed_now:
        if not session.directory.claim(name, session):
            return FAILURE
        session.name = name
    if not accounts.register(name, password):
        if claimed_now:
            session.log_out("registration refused")
        return FAILURE
    session.registered = True
    log.info("registered %s (%s)", name, session.peer)
    return OK


def _change_password(session: "Session", old, new):
    accounts = session.accounts
    assert accounts is not None
    name = session.name
    if not session.registered or name is None or not is_valid_password(new):
        return FAILURE
    return OK if accounts.change_password(name, old, new, session.host) else FAILURE


def _history(session: "Session", peer, count, before):
    accounts = session.accounts
    assert accounts is not None
    name = session.name
    if not session.registered or name is None or not 1 <= count <= MAX_HISTORY_COUNT:
        return FAILURE
    entries = accounts.history(name, peer, count, before)
    # The newest entries that fit in one frame; the client asks again for older ones.
    room = MAX_BODY - len(encode(HistoryPage(peer, ())))
    kept = []
    for entry in reversed(entries):
        room -= len(history_entry(entry))
        if room < 0:
            break
        kept.append(entry)
    return encode(HistoryPage(peer, tuple(reversed(kept))))
