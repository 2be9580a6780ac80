// The chatroom wire protocol (docs/protocol.md) for the page: frames to bytes and back, and a
// Connection over a WebSocket, one frame per binary message, that reconnects by itself.

export const MAX_TEXT = 65535;
export const MAX_NAME = 20;
const HELLO_VERSION = 4;

const LOGIN = 0x01, LIST = 0x02, SENDTO = 0x03, LOGOUT = 0x04, HELLO = 0x05, REGISTER = 0x06,
  AUTHENTICATE = 0x07, CHANGE_PASSWORD = 0x08, HISTORY = 0x09, SESSION_TOKEN = 0x0a, RESUME = 0x0b,
  WATCH = 0x0c, JOIN = 0x0d, PART = 0x0e, ROOMS = 0x0f, MEMBERS = 0x10, SET_TOPIC = 0x11, MARK = 0x19,
  UNREAD = 0x1a, AWAY = 0x1b;
export const USER_LIST = 0x81, RESPONSE = 0x82, INCOMING = 0x83, HISTORY_PAGE = 0x84,
  STORED_MESSAGE = 0x85, VERSION = 0x86, TOKEN = 0x87, PRESENCE = 0x88, ROOM_MESSAGE = 0x89,
  ROOM_LIST = 0x8a, MEMBER_LIST = 0x8b, ROOM_EVENT = 0x8c, ROOM_HISTORY = 0x8d, DIRECT_MESSAGE = 0x8e, KEPT_MESSAGE = 0x8f,
  OWN_MESSAGE = 0x92, MARKED = 0x93, UNREAD_COUNTS = 0x94, PRESENCE_STATUS = 0x95, SESSION_ENDED = 0x96;
export const OK = 0x00, FAILURE = 0x01, MALFORMED = 0x02, REGISTERED = 0x03, STORED = 0x04;
const PUSHED = new Set([INCOMING, DIRECT_MESSAGE, STORED_MESSAGE, KEPT_MESSAGE, PRESENCE, ROOM_MESSAGE, ROOM_EVENT,
  OWN_MESSAGE, MARKED, PRESENCE_STATUS, SESSION_ENDED]);
export const EVENT_WORDS = {
  1: "{actor} joined", 2: "{actor} left", 3: "{actor} removed {detail}", 4: "{actor} set the topic: {detail}",
  5: "{actor} made the room invite-only: {detail}", 6: "{actor} handed the room to {detail}", 7: "{actor} invited {detail}",
};  // not replies: they come any time

// The words for each reason of a FAILURE; {name} is what the request was about.
const REASONS = {
  0x01: "not a valid name (1-20 characters, no spaces or invisible characters)",
  0x02: "{name} is in use",
  0x03: "looks like {detail}, who is logged in or registered",
  0x04: "wrong password",
  0x05: "too many tries: wait {detail} s",
  0x06: "not logged in",
  0x07: "already logged in as {detail}",
  0x08: "{name} is not online",
  0x09: "{name}'s mailbox is full",
  0x0a: "a message is 1 to 65535 characters",
  0x0b: "a password is 1 to 255 bytes",
  0x0c: "{name} is registered already",
  0x0d: "only a registered name, logged in with its password, can do that",
  0x0e: "the server cannot do that now; try again later",
  0x0f: "{name} is not taking messages",
  0x10: "too many password checks for {name} at once; try again",
  0x11: "this server has no accounts",
  0x12: "at most 1000 messages",
  0x13: "too many names registered from your address this hour",
  0x14: "the saved login has expired: log in again",
  0x15: "a room is # and 1-20 characters, no spaces",
  0x16: "{name}: no such room",
  0x17: "not a member",
  0x18: "only the owner of {name} can do that",
  0x19: "{name} is invite-only: ask its owner for an invitation",
  0x1a: "{name} is full ({detail} members)",
  0x1b: "too many rooms (at most {detail})",
  0x1c: "logged in from too many devices (at most {detail})",
  0x1d: "no such session",
  0x1e: "read markers are kept for {detail} conversations at most",
};

// A JOIN's LOOKS_LIKE names a room (under another case, or a look-alike), not a person.
const LOOKS_LIKE_A_ROOM = "looks like the room {detail}, which is there already";

export function reasonText(reply, name = "") {
  const room = reply.reason === 0x03 && (reply.detail || "").startsWith("#");
  const words = room ? LOOKS_LIKE_A_ROOM : REASONS[reply.reason];
  if (!words) return null;
  return words.replace("{name}", name).replace("{detail}", reply.detail || "");
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function frame(type, ...parts) {
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  const bytes = new Uint8Array(5 + length);
  bytes[0] = type;
  new DataView(bytes.buffer).setUint32(1, length);
  let offset = 5;
  for (const part of parts) { bytes.set(part, offset); offset += part.length; }
  return bytes;
}

function nameField(name) {
  const bytes = encoder.encode(name);
  return Uint8Array.of(bytes.length, ...bytes);
}

function splitNameField(body, offset) {
  const end = offset + 1 + body[offset];
  if (end > body.length) throw new Error("name field runs past the body");
  return [decoder.decode(body.subarray(offset + 1, end)), end];
}

function historyEntries(body, offset) {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const entries = [];
  while (offset < body.length) {
    const id = view.getBigUint64(offset);  // (exact: ids pass 2^53)
    const time = Number(view.getBigUint64(offset + 8));
    const sent = body[offset + 16] === 0;
    const length = view.getUint32(offset + 17);
    const start = offset + 21;
    entries.push({ id, time: new Date(time), sent, text: decoder.decode(body.subarray(start, start + length)) });
    offset = start + length;
  }
  return entries;
}

function u64(body, offset) {
  return Number(id64(body, offset));
}

// A message's id, exact (a BigInt: ids pass 2^53), as markers need it.
function id64(body, offset) {
  return new DataView(body.buffer, body.byteOffset, body.byteLength).getBigUint64(offset);
}

function parseRoom(type, body) {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const [room, end] = splitNameField(body, 0);
  if (type === ROOM_MESSAGE) {
    const [sender, start] = splitNameField(body, end);
    return { type, room, sender, id: id64(body, start), time: new Date(u64(body, start + 8)), text: decoder.decode(body.subarray(start + 16)) };
  }
  if (type === ROOM_EVENT) {
    const [actor, start] = splitNameField(body, end + 1);
    return { type, room, kind: body[end], actor, detail: decoder.decode(body.subarray(start)) };
  }
  if (type === MEMBER_LIST) {
    const length = view.getUint16(end);
    const topic = decoder.decode(body.subarray(end + 2, end + 2 + length));
    const members = [];
    for (let offset = end + 2 + length; offset < body.length;) {
      const [name, next] = splitNameField(body, offset + 1);
      members.push({ name, online: (body[offset] & 1) !== 0, owner: (body[offset] & 2) !== 0 });
      offset = next;
    }
    return { type, room, topic, members };
  }
  const entries = [];  // ROOM_HISTORY
  for (let offset = end; offset < body.length;) {
    const [sender, start] = splitNameField(body, offset + 16);
    const length = view.getUint32(start);
    entries.push({ id: id64(body, offset), time: new Date(u64(body, offset + 8)), sender,
      text: decoder.decode(body.subarray(start + 4, start + 4 + length)) });
    offset = start + 4 + length;
  }
  return { type, room, entries };
}

export function parse(bytes) {
  const type = bytes[0];
  const body = bytes.subarray(5, 5 + new DataView(bytes.buffer, bytes.byteOffset).getUint32(1));
  if ([ROOM_MESSAGE, ROOM_EVENT, MEMBER_LIST, ROOM_HISTORY].includes(type)) return parseRoom(type, body);
  if (type === ROOM_LIST) {
    const rooms = [];
    for (let offset = 0; offset < body.length;) {
      const [name, end] = splitNameField(body, offset);
      const flags = body[end];
      rooms.push({ name, member: (flags & 1) !== 0, owner: (flags & 2) !== 0, inviteOnly: (flags & 4) !== 0,
        members: new DataView(body.buffer, body.byteOffset).getUint32(end + 1) });
      offset = end + 5;
    }
    return { type, rooms };
  }
  if (type === RESPONSE) {
    return { type, status: body[0], reason: body[1], detail: body.length > 2 ? decoder.decode(body.subarray(2)) : "" };
  }
  if (type === INCOMING) {
    const [sender, end] = splitNameField(body, 0);
    return { type, sender, text: decoder.decode(body.subarray(end)), time: new Date() };
  }
  if (type === DIRECT_MESSAGE || type === KEPT_MESSAGE) {  // with its id (as in the history) and time
    const [sender, end] = splitNameField(body, 0);
    return { type: type === DIRECT_MESSAGE ? INCOMING : STORED_MESSAGE, sender, id: id64(body, end), time: new Date(u64(body, end + 8)), text: decoder.decode(body.subarray(end + 16)) };
  }
  if (type === STORED_MESSAGE) {
    const [sender, end] = splitNameField(body, 0);
    const time = Number(new DataView(body.buffer, body.byteOffset).getBigUint64(end));
    return { type, sender, text: decoder.decode(body.subarray(end + 8)), time: new Date(time) };
  }
  if (type === USER_LIST || type === PRESENCE) {
    const changes = [];
    for (let offset = 0; offset < body.length;) {
      const online = type === USER_LIST || body[offset] === 1;
      const [name, end] = splitNameField(body, type === PRESENCE ? offset + 1 : offset);
      changes.push([name, online]);
      offset = end;
    }
    return type === USER_LIST ? { type, names: changes.map(([name]) => name) } : { type, changes };
  }
  if (type === HISTORY_PAGE) {
    const [peer, end] = splitNameField(body, 0);
    return { type, peer, entries: historyEntries(body, end) };
  }
  if (type === OWN_MESSAGE) {  // one's own, sent from another of one's sessions
    const [recipient, end] = splitNameField(body, 0);
    return { type, recipient, id: id64(body, end), time: new Date(u64(body, end + 8)), text: decoder.decode(body.subarray(end + 16)) };
  }
  if (type === MARKED) {
    const [conversation, end] = splitNameField(body, 0);
    return { type, conversation, id: id64(body, end) };
  }
  if (type === PRESENCE_STATUS) {  // [name, state (0 offline, 1 online, 2 away), away message]
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    const changes = [];
    for (let offset = 0; offset < body.length;) {
      const [name, end] = splitNameField(body, offset + 1);
      const length = view.getUint16(end);
      changes.push([name, body[offset], decoder.decode(body.subarray(end + 2, end + 2 + length))]);
      offset = end + 2 + length;
    }
    return { type, changes };
  }
  if (type === UNREAD_COUNTS) {
    const entries = [];
    for (let offset = 0; offset < body.length;) {
      const [conversation, end] = splitNameField(body, offset);
      entries.push({ conversation, marker: id64(body, end), count: new DataView(body.buffer, body.byteOffset).getUint32(end + 8) });
      offset = end + 12;
    }
    return { type, entries };
  }
  if (type === TOKEN) return { type, token: decoder.decode(body) };
  if (type === VERSION) return { type, version: body[0] };
  return { type };
}

// --- The connection: requests answered in order, pushed frames to a callback, reconnects ----

export class Connection {
  // onPush(message) for what the server sends unasked; onState(text, connected) as the link
  // comes and goes; onOpen() once a new connection has said HELLO (log in again there).
  constructor(onPush, onState, onOpen) {
    this.onPush = onPush;
    this.onState = onState;
    this.onOpen = onOpen;
    this.waiting = [];
    this.delay = 1;
    this.extended = false;
    this.version = 0;  // the extension version the server speaks to this page
    this.retry = null;
    this.open();
  }

  open() {
    clearInterval(this.retry);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.socket = new WebSocket(`${scheme}//${location.host}/chat`);
    this.socket.binaryType = "arraybuffer";
    this.socket.onopen = () => this.greet();
    this.socket.onmessage = (event) => this.receive(new Uint8Array(event.data));
    this.socket.onclose = () => this.lost();
  }

  async greet() {
    this.delay = 1;
    try {
      const reply = await this.request(frame(HELLO, Uint8Array.of(HELLO_VERSION)));
      this.extended = reply.type === VERSION || reply.status === OK;
      this.version = reply.type === VERSION ? reply.version : (reply.status === OK ? HELLO_VERSION : 0);
      if (this.extended) await this.request(frame(WATCH, Uint8Array.of(1)));
    } catch { return; }  // lost again: the next connection greets
    await this.onOpen();
    this.onState("connected", true);
  }

  lost() {
    for (const waiter of this.waiting.splice(0)) waiter.reject(new Error("disconnected"));
    const delay = Math.round(this.delay * (0.8 + Math.random() * 0.4));
    this.delay = Math.min(this.delay * 2, 30);
    let left = delay;
    const countDown = () => {
      if (left <= 0) { this.open(); return; }
      this.onState(`disconnected; reconnecting in ${left}s`, false);
      left -= 1;
    };
    countDown();
    this.retry = setInterval(countDown, 1000);
  }

  receive(bytes) {
    let message;
    try { message = parse(bytes); } catch { return; }
    if (PUSHED.has(message.type)) this.onPush(message);
    else this.waiting.shift()?.resolve(message);
  }

  request(bytes) {
    if (this.socket.readyState !== WebSocket.OPEN) return Promise.reject(new Error("not connected"));
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.socket.send(bytes);
    });
  }

  login(name) { return this.request(frame(LOGIN, encoder.encode(name))); }
  authenticate(name, password) { return this.request(frame(AUTHENTICATE, nameField(name), encoder.encode(password))); }
  register(name, password) { return this.request(frame(REGISTER, nameField(name), encoder.encode(password))); }
  changePassword(old, password) { return this.request(frame(CHANGE_PASSWORD, nameField(old), encoder.encode(password))); }
  sessionToken() { return this.request(frame(SESSION_TOKEN)); }
  resume(name, token) { return this.request(frame(RESUME, nameField(name), encoder.encode(token))); }
  list() { return this.request(frame(LIST)); }
  logout() { return this.request(frame(LOGOUT)); }
  sendTo(name, text) { return this.request(frame(SENDTO, nameField(name), encoder.encode(text))); }
  join(room) { return this.request(frame(JOIN, encoder.encode(room))); }
  part(room) { return this.request(frame(PART, encoder.encode(room))); }
  rooms() { return this.request(frame(ROOMS)); }
  members(room) { return this.request(frame(MEMBERS, encoder.encode(room))); }
  unread() { return this.request(frame(UNREAD)); }
  away(on) { return this.request(frame(AWAY, Uint8Array.of(on ? 1 : 0))); }

  mark(conversation, id) {
    const tail = new Uint8Array(8);
    new DataView(tail.buffer).setBigUint64(0, BigInt(id));
    return this.request(frame(MARK, nameField(conversation), tail));
  }

  setTopic(room, topic) { return this.request(frame(SET_TOPIC, nameField(room), encoder.encode(topic))); }

  history(peer, count, before) {
    const tail = new Uint8Array(10);
    const view = new DataView(tail.buffer);
    view.setUint16(0, count);
    view.setBigUint64(2, BigInt(before));
    return this.request(frame(HISTORY, nameField(peer), tail));
  }
}
