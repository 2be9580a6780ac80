"""How each frame's body is laid out, read back: a parser per frame type, for each direction.

The frame's header is the codec's (:mod:`chatroom.codec`); a parser gets the body alone and
returns the message, or raises :class:`BadBody` for a body that breaks the protocol.
"""

import struct

from . import device_frames, room_frames, search_frames
from .fields import BadBody, at_most_most_id, split_name_field
from .fields import text as _text
from .protocol import (
    AUTHENTICATE,
    CHANGE_PASSWORD,
    DIRECT_MESSAGE,
    HELLO,
    HISTORY,
    HISTORY_PAGE,
    INCOMING,
    KEPT_MESSAGE,
    LIST,
    LOGIN,
    LOGOUT,
    PRESENCE,
    REGISTER,
    RESPONSE,
    RESUME,
    SENDTO,
    SESSION_TOKEN,
    STORED_MESSAGE,
    TOKEN,
    USER_LIST,
    VERSION,
    WATCH,
    Authenticate,
    ChangePassword,
    DirectMessage,
    Hello,
    HistoryEntry,
    HistoryPage,
    HistoryRequest,
    Incoming,
    ListUsers,
    Login,
    Logout,
    Presence,
    Reason,
    Register,
    Response,
    Resume,
    SendTo,
    ServerVersion,
    SessionToken,
    Status,
    StoredMessage,
    TokenRequest,
    UserList,
    Watch,
)

HISTORY_REQUEST = struct.Struct("!HQ")  # count, before
ENTRY_HEAD = struct.Struct("!QQBI")  # id, time in ms, direction, text bytes
TIME = struct.Struct("!Q")
SENT, RECEIVED = 0x00, 0x01


def _split_name_field(body):
    """(name, rest) for a body that starts with a name field."""
    name, end = split_name_field(body)
    return name, body[end:]


def _empty(message_class):
    def parse(body):
        if body:
            raise BadBody("unexpected body")
        return message_class()

    return parse


def _parse_login(body):
    return Login(_text(body))


def parse_sendto(body):
    # (The relay's frame: read in one place, without the helpers' calls.)
    if not body or 1 + body[0] > len(body):
        raise BadBody("name field runs past the body")
    end = 1 + body[0]
    raw = body[end:]
    try:
        return SendTo(body[1:end].decode(), raw.decode(), raw)
    except UnicodeDecodeError:
        raise BadBody("invalid UTF-8") from None


def _parse_user_list(body):
    names = []
    while body:
        name, body = _split_name_field(body)
        names.append(name)
    return UserList(tuple(names))


def _parse_response(body):
    if not body or body[0] not in Status._value2member_map_:
        raise BadBody("bad status")
    if len(body) == 1:
        return Response(Status(body[0]))
    if body[0] != Status.FAILURE:
        raise BadBody("a reason for a status other than FAILURE")
    # A reason newer than this client is still a FAILURE, of no known reason.
    reason = Reason(body[1]) if body[1] in Reason._value2member_map_ else None
    return Response(Status.FAILURE, reason, _text(body[2:]))


def _parse_incoming(body):
    sender, text = _split_name_field(body)
    return Incoming(sender, _text(text))


def _parse_hello(body):
    if len(body) != 1 or body[0] == 0:
        raise BadBody("a version, one byte, at least 1")
    return Hello(body[0])


def _parse_server_version(body):
    if len(body) != 1 or body[0] == 0:
        raise BadBody("a version, one byte, at least 1")
    return ServerVersion(body[0])


def _name_andtext(message_class):
    def parse(body):
        name, rest = _split_name_field(body)
        return message_class(name, _text(rest))

    return parse


def _parse_history_request(body):
    peer, rest = _split_name_field(body)
    if len(rest) != HISTORY_REQUEST.size:
        raise BadBody("count and before")
    count, before = HISTORY_REQUEST.unpack(rest)
    before = at_most_most_id(before)
    return HistoryRequest(peer, count, before)


def _parse_direct_message(body):
    sender, rest = _split_name_field(body)
    if len(rest) < 2 * TIME.size:
        raise BadBody("no id and time")
    message_id, time_ms = TIME.unpack_from(rest)[0], TIME.unpack_from(rest, TIME.size)[0]
    return DirectMessage(sender, message_id, time_ms, _text(rest[2 * TIME.size :]))


def _parse_kept_message(body):
    message = _parse_direct_message(body)
    return StoredMessage(message.sender, message.time_ms, message.text, message.id)


def _parse_stored_message(body):
    sender, rest = _split_name_field(body)
    if len(rest) < TIME.size:
        raise BadBody("no time")
    return StoredMessage(sender, TIME.unpack_from(rest)[0], _text(rest[TIME.size :]))


def _parse_history_page(body):
    peer, rest = _split_name_field(body)
    entries = []
    offset = 0
    while offset < len(rest):
        if len(rest) - offset < ENTRY_HEAD.size:
            raise BadBody("entry header runs past the body")
        entry_id, time_ms, direction, length = ENTRY_HEAD.unpack_from(rest, offset)
        start = offset + ENTRY_HEAD.size
        if direction not in (SENT, RECEIVED) or start + length > len(rest):
            raise BadBody("bad entry")
        entries.append(HistoryEntry(entry_id, time_ms, direction == SENT, _text(rest[start : start + length])))
        offset = start + length
    return HistoryPage(peer, tuple(entries))


def _parse_watch(body):
    if len(body) != 1 or body[0] > 1:
        raise BadBody("one byte, 0 or 1")
    return Watch(body[0] == 1)


def _parse_token(body):
    if not body:
        raise BadBody("no token")
    return SessionToken(_text(body))


def _parse_presence(body):
    changes = []
    offset = 0
    while offset < len(body):
        state = body[offset]
        if state > 1:
            raise BadBody("a state is 0 or 1")
        name, rest = _split_name_field(body[offset + 1 :])
        changes.append((name, state == 1))
        offset = len(body) - len(rest)
    return Presence(tuple(changes))


CLIENT_MESSAGES = {
    LOGIN: _parse_login,
    LIST: _empty(ListUsers),
    SENDTO: parse_sendto,
    LOGOUT: _empty(Logout),
    # The extension's requests are decoded for everyone; a session that did not say HELLO
    # answers them MALFORMED, as the seed protocol does any unknown type.
    HELLO: _parse_hello,
    REGISTER: _name_andtext(Register),
    AUTHENTICATE: _name_andtext(Authenticate),
    CHANGE_PASSWORD: _name_andtext(ChangePassword),
    HISTORY: _parse_history_request,
    SESSION_TOKEN: _empty(TokenRequest),
    RESUME: _name_andtext(Resume),
    WATCH: _parse_watch,
}
SERVER_MESSAGES = {
    USER_LIST: _parse_user_list,
    RESPONSE: _parse_response,
    INCOMING: _parse_incoming,
    HISTORY_PAGE: _parse_history_page,
    STORED_MESSAGE: _parse_stored_message,
    DIRECT_MESSAGE: _parse_direct_message,
    KEPT_MESSAGE: _parse_kept_message,
    VERSION: _parse_server_version,
    TOKEN: _parse_token,
    PRESENCE: _parse_presence,
}
CLIENT_MESSAGES.update(room_frames.CLIENT_PARSERS)
CLIENT_MESSAGES.update(search_frames.CLIENT_PARSERS)
SERVER_MESSAGES.update(room_frames.SERVER_PARSERS)
SERVER_MESSAGES.update(search_frames.SERVER_PARSERS)
CLIENT_MESSAGES.update(device_frames.CLIENT_PARSERS)
SERVER_MESSAGES.update(device_frames.SERVER_PARSERS)
