"""Sans-I/O codec: messages to bytes with :func:`encode`, bytes to messages with a Decoder.

No sockets here. A Decoder takes the bytes of a stream in whatever pieces they arrive and
hands back whole messages, so the server, the client, the benchmark and the tests all speak
the protocol through the same few functions.
"""

import functools
import struct

from . import device_frames, room_frames, search_frames
from .bodies import CLIENT_MESSAGES, ENTRY_HEAD, HISTORY_REQUEST, RECEIVED, SENT, SERVER_MESSAGES, TIME, parse_sendto
from .device_frames import Marked, OwnMessage, PresenceStatus, SessionEnded
from .fields import ID_AND_TIME_SIZE, BadBody, id_and_time, name_field
from .protocol import (
    AUTHENTICATE,
    CHANGE_PASSWORD,
    DIRECT_MESSAGE,
    HEADER_SIZE,
    HELLO,
    HISTORY,
    HISTORY_PAGE,
    INCOMING,
    KEPT_MESSAGE,
    LIST,
    LOGIN,
    LOGOUT,
    MAX_BODY,
    MAX_SERVER_BODY,
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
    FrameTooLarge,
    Hello,
    HistoryEntry,
    HistoryPage,
    HistoryRequest,
    Incoming,
    ListUsers,
    Login,
    Logout,
    Malformed,
    Presence,
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
from .room_frames import ROOM_MESSAGE, RoomEvent, RoomMessage

try:
    from . import _frames as compiled  # (built from _frames.c where the install found a compiler)
except ImportError:
    compiled = None  # type: ignore[assignment]

_HEADER = struct.Struct("!BI")


# --- Encoding ---------------------------------------------------------------------------


def frame(frame_type: int, body: bytes = b"") -> bytes:
    return _HEADER.pack(frame_type, len(body)) + body


@functools.lru_cache(maxsize=4096)
def sender_field(name: str) -> bytes:
    """name's name field, kept for the senders and rooms of the moment (one per relayed message)."""
    return name_field(name)


def incoming_frame_in_python(sender: str, text: bytes) -> bytes:
    """INCOMING from sender, its text UTF-8 as it came: the relay's frame, without decoding
    and encoding the text again."""
    head = sender_field(sender)
    return _HEADER.pack(INCOMING, len(head) + len(text)) + head + text


def direct_message_frame_in_python(sender: str, message_id: int, time_ms: int, text: bytes) -> bytes:
    """DIRECT-MESSAGE from sender (see incoming_frame_in_python)."""
    head = sender_field(sender) + id_and_time(message_id, time_ms)
    return _HEADER.pack(DIRECT_MESSAGE, len(head) + len(text)) + head + text


# (Once per relayed message: made in C where it was built, called without a Python frame.)
incoming_frame = incoming_frame_in_python if compiled is None else compiled.incoming_frame
direct_message_frame = direct_message_frame_in_python if compiled is None else compiled.direct_message_frame


def room_message_frame_in_python(room: str, sender: str, message_id: int, time_ms: int, text: bytes) -> bytes:
    """ROOM-MESSAGE (see incoming_frame_in_python): made once for all a room's members."""
    head = sender_field(room) + sender_field(sender) + id_and_time(message_id, time_ms)
    return _HEADER.pack(ROOM_MESSAGE, len(head) + len(text)) + head + text


room_message_frame = room_message_frame_in_python if compiled is None else compiled.room_message_frame


def frame_end(data, start: int = 0) -> int | None:
    """Where the frame that begins at ``start`` in data ends (its header says), or None while
    the header is not all there. Whether the frame itself is all there is ``end <= len(data)``."""
    if len(data) - start < HEADER_SIZE:
        return None
    return start + HEADER_SIZE + int.from_bytes(data[start + 1 : start + HEADER_SIZE], "big")


def split_frames(data) -> tuple[list, int]:
    """The whole frames at the start of data (slices of it), and the bytes they take: for
    carriers that pass frames through whole (one per WebSocket message) without decoding them."""
    frames = []
    offset = 0
    while (end := frame_end(data, offset)) is not None and end <= len(data):
        frames.append(data[offset:end])
        offset = end
    return frames, offset


def is_one_frame(data) -> bool:
    """Whether data is exactly one frame, as its header says."""
    return frame_end(data) == len(data)


def encode(message) -> bytes:
    """The frame for one message, in either direction."""
    kind = type(message)
    if kind is Incoming:
        return incoming_frame(message.sender, message.text.encode())
    if kind is Response:
        if message.reason is None:
            return frame(RESPONSE, bytes((message.status,)))
        return frame(RESPONSE, bytes((message.status, message.reason)) + message.detail.encode())
    if kind is SendTo:
        return frame(SENDTO, name_field(message.recipient) + message.text.encode())
    if kind is Login:
        return frame(LOGIN, message.name.encode())
    if kind is ListUsers:
        return frame(LIST)
    if kind is Logout:
        return frame(LOGOUT)
    if kind is UserList:
        return frame(USER_LIST, b"".join(name_field(name) for name in message.names))
    return _encode_extension(message)


def _encode_extension(message) -> bytes:
    kind = type(message)
    if kind is Hello:
        return frame(HELLO, bytes((message.version,)))
    if kind is ServerVersion:
        return frame(VERSION, bytes((message.version,)))
    if kind is Register:
        return frame(REGISTER, name_field(message.name) + message.password.encode())
    if kind is Authenticate:
        return frame(AUTHENTICATE, name_field(message.name) + message.password.encode())
    if kind is ChangePassword:
        return frame(CHANGE_PASSWORD, name_field(message.old) + message.new.encode())
    if kind is HistoryRequest:
        return frame(HISTORY, name_field(message.peer) + HISTORY_REQUEST.pack(message.count, message.before))
    if kind is DirectMessage:
        return direct_message_frame(message.sender, message.id, message.time_ms, message.text.encode())
    if kind is StoredMessage and message.id:
        head = name_field(message.sender) + id_and_time(message.id, message.time_ms)
        return frame(KEPT_MESSAGE, head + message.text.encode())
    if kind is StoredMessage:
        return frame(STORED_MESSAGE, name_field(message.sender) + TIME.pack(message.time_ms) + message.text.encode())
    if kind is HistoryPage:
        return frame(HISTORY_PAGE, name_field(message.peer) + b"".join(map(history_entry, message.entries)))
    if kind is TokenRequest:
        return frame(SESSION_TOKEN)
    if kind is Resume:
        return frame(RESUME, name_field(message.name) + message.token.encode())
    if kind is Watch:
        return frame(WATCH, bytes((1 if message.on else 0,)))
    if kind is SessionToken:
        return frame(TOKEN, message.token.encode())
    if kind is Presence:
        return frame(PRESENCE, b"".join(bytes((online,)) + name_field(name) for name, online in message.changes))
    room_body = (
        room_frames.encode_body(message) or search_frames.encode_body(message) or device_frames.encode_body(message)
    )
    if room_body is None:
        raise TypeError(f"not a protocol message: {message!r}")
    return frame(*room_body)


def history_entry(entry: HistoryEntry) -> bytes:
    """One entry of a HISTORY page, as it is laid out in the frame's body."""
    text = entry.text.encode()
    return ENTRY_HEAD.pack(entry.id, entry.time_ms, SENT if entry.sent else RECEIVED, len(text)) + text


def without_id(data: bytes) -> bytes:
    """A DIRECT-MESSAGE frame as the INCOMING one a client of an older version takes; any
    other frame as it is. Cut from its bytes (the sender's field, then the text, past the id
    and time): every message another node relays to such a client comes through here."""
    if data[:1] != _DIRECT_MESSAGE_TYPE:
        return data
    sender_end = HEADER_SIZE + 1 + data[HEADER_SIZE]
    sender, text = data[HEADER_SIZE:sender_end], data[sender_end + ID_AND_TIME_SIZE :]
    return _HEADER.pack(INCOMING, len(sender) + len(text)) + sender + text


_DIRECT_MESSAGE_TYPE = bytes((DIRECT_MESSAGE,))
# SendTo's fields' slots, for _frames.c to set (in the order it sets them).
_SENDTO_FIELDS = tuple(vars(SendTo)[name] for name in ("recipient", "text", "raw"))


# What a server sends unasked (every other frame it sends answers a request).
PUSHED = (
    Incoming,
    DirectMessage,
    StoredMessage,
    Presence,
    RoomMessage,
    RoomEvent,
    OwnMessage,
    Marked,
    PresenceStatus,
    SessionEnded,
)


def reply_status(data) -> Status | None:
    """The status of the RESPONSE frame data, or None if it is another frame (for counting
    replies without decoding them)."""
    if len(data) > HEADER_SIZE and data[0] == RESPONSE:
        return Status._value2member_map_.get(data[HEADER_SIZE])  # type: ignore[return-value]
    return None


# --- Decoding ---------------------------------------------------------------------------


class Decoder:
    """Incremental frame decoder for one direction of one stream.

    ``receive_data(data)`` returns the events completed by ``data``: messages, Malformed for
    a well-framed but invalid frame, and at most one FrameTooLarge, after which the stream is
    out of step and the decoder ignores everything it is given. A length is checked against
    MAX_BODY before anything is buffered for it.
    """

    __slots__ = ("_parsers", "_max_body", "_buffer", "broken", "_reads_sendto")

    def __init__(self, parsers, max_body: int = MAX_BODY):
        self._parsers = parsers
        self._max_body = max_body
        self._buffer: bytes | bytearray = b""  # (a bytearray only while a frame is unfinished)
        self.broken = False
        # SENDTO frames, the relay's, are read in C where it was built (see _frames.c).
        self._reads_sendto = compiled is not None and parsers.get(SENDTO) is parse_sendto

    @classmethod
    def for_server(cls):
        """Decodes what clients send."""
        return cls(CLIENT_MESSAGES)

    @classmethod
    def for_client(cls):
        """Decodes what servers send (whose frames may be longer: MAX_SERVER_BODY)."""
        return cls(SERVER_MESSAGES, MAX_SERVER_BODY)

    @property
    def pending(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buffer)

    def receive_data(self, data: bytes | bytearray) -> list:
        if self.broken:
            return []
        buffer = self._buffer
        if isinstance(buffer, bytearray):  # (an unfinished frame: what comes extends it)
            buffer += data
            data = buffer
        events: list = []
        offset = self._decode_frames(data, events)
        if isinstance(buffer, bytearray):
            del buffer[:offset]
            if not buffer:
                self._buffer = b""  # (most connections hold no unfinished frame: no buffer)
        elif offset < len(data):
            self._buffer = bytearray(data[offset:])
        return events

    def _decode_frames(self, data, events) -> int:
        """Append the events of the complete frames in data; return the bytes consumed."""
        offset = 0
        end = len(data)
        while end - offset >= HEADER_SIZE:
            if self._reads_sendto:
                offset = compiled.sendto_frames(data, offset, events, SendTo, _SENDTO_FIELDS, MAX_BODY)
                if end - offset < HEADER_SIZE:
                    break
            frame_type, length = _HEADER.unpack_from(data, offset)
            if length > self._max_body:
                events.append(FrameTooLarge(frame_type, length))
                self.broken = True
                return end
            body_start = offset + HEADER_SIZE
            body_end = body_start + length
            if body_end > end:
                break
            events.append(self._parse(frame_type, data[body_start:body_end]))
            offset = body_end
        return offset

    def _parse(self, frame_type, body):
        parse = self._parsers.get(frame_type)
        if parse is None:
            return Malformed(frame_type)
        try:
            return parse(body)
        except BadBody:
            return Malformed(frame_type)
