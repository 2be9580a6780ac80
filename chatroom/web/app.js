// The chatroom browser client: docs/protocol.md over a WebSocket, one frame per binary message.
// Every piece of text from the network goes into the page with textContent, never as HTML.
"use strict";

const LOGIN = 0x01, LIST = 0x02, SENDTO = 0x03, LOGOUT = 0x04;
const USER_LIST = 0x81, RESPONSE = 0x82, INCOMING = 0x83;
const OK = 0x00, FAILURE = 0x01, MALFORMED = 0x02;
const MAX_TEXT = 65535;
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

// --- Frames -------------------------------------------------------------------------------

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
  return [decoder.decode(body.subarray(offset + 1, end)), end];
}

function parse(bytes) {
  const type = bytes[0];
  const body = bytes.subarray(5, 5 + new DataView(bytes.buffer, bytes.byteOffset).getUint32(1));
  if (type === RESPONSE) return { type, status: body[0] };
  if (type === INCOMING) {
    const [sender, end] = splitNameField(body, 0);
    return { type, sender, text: decoder.decode(body.subarray(end)) };
  }
  if (type === USER_LIST) {
    const names = [];
    for (let offset = 0; offset < body.length;) {
      const [name, end] = splitNameField(body, offset);
      names.push(name);
      offset = end;
    }
    return { type, names };
  }
  return { type };
}

// --- The connection: requests answered in order, messages to a callback, reconnects -------

class Connection {
  constructor(onMessage, onState) {
    this.onMessage = onMessage;
    this.onState = onState;
    this.waiting = [];
    this.delay = 1;
    this.open();
  }

  open() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.socket = new WebSocket(`${scheme}//${location.host}/chat`);
    this.socket.binaryType = "arraybuffer";
    this.socket.onopen = () => { this.delay = 1; this.onState("connected"); };
    this.socket.onmessage = (event) => this.receive(new Uint8Array(event.data));
    this.socket.onclose = () => this.lost();
  }

  lost() {
    for (const waiter of this.waiting.splice(0)) waiter.reject(new Error("disconnected"));
    const delay = this.delay * (0.8 + Math.random() * 0.4);
    this.onState(`disconnected; reconnecting in ${Math.round(delay)}s`);
    this.delay = Math.min(this.delay * 2, 60);
    setTimeout(() => this.open(), delay * 1000);
  }

  receive(bytes) {
    let message;
    try { message = parse(bytes); } catch { return; }
    if (message.type === INCOMING) this.onMessage(message);
    else if (message.type === RESPONSE || message.type === USER_LIST) this.waiting.shift()?.resolve(message);
  }

  request(bytes) {
    if (this.socket.readyState !== WebSocket.OPEN) return Promise.reject(new Error("not connected"));
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.socket.send(bytes);
    });
  }

  login(name) { return this.request(frame(LOGIN, encoder.encode(name))); }
  list() { return this.request(frame(LIST)); }
  logout() { return this.request(frame(LOGOUT)); }
  sendTo(name, text) { return this.request(frame(SENDTO, nameField(name), encoder.encode(text))); }
}

// --- The page ------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const state = { me: null, peer: null, online: [], conversations: new Map(), unread: new Map() };

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;  // text, never HTML
  return node;
}

function clock(date) {
  return date.toTimeString().slice(0, 5);
}

function conversation(name) {
  if (!state.conversations.has(name)) state.conversations.set(name, []);
  return state.conversations.get(name);
}

function renderUsers() {
  const list = $("users");
  list.replaceChildren();
  const names = new Set([...state.online, ...state.conversations.keys()]);
  names.delete(state.me);
  for (const name of [...names].sort()) {
    const item = element("li", "user");
    item.dataset.name = name;
    if (name === state.peer) item.classList.add("active");
    if (!state.online.includes(name)) item.classList.add("offline");
    item.append(element("span", "name", name), element("span", "unread", String(state.unread.get(name) || "")));
    item.addEventListener("click", () => openConversation(name));
    list.append(item);
  }
}

function renderMessages() {
  const list = $("messages");
  list.replaceChildren();
  for (const entry of state.peer ? conversation(state.peer) : []) {
    const item = element("li", `message ${entry.mine ? "mine" : ""} ${entry.note ? "note" : ""}`);
    const time = element("time", "", clock(entry.time));
    time.dateTime = entry.time.toISOString();
    item.append(time, element("span", "sender", entry.note ? "" : (entry.mine ? "me" : entry.sender)), element("span", "text", entry.text));
    list.append(item);
  }
  list.scrollTop = list.scrollHeight;
}

function openConversation(name) {
  state.peer = name;
  state.unread.delete(name);
  $("peer").textContent = name;
  $("text").disabled = $("send").disabled = false;
  $("text").focus();
  renderUsers();
  renderMessages();
}

function received(message) {
  conversation(message.sender).push({ sender: message.sender, text: message.text, time: new Date(), mine: false });
  if (message.sender !== state.peer || document.hidden) {
    state.unread.set(message.sender, (state.unread.get(message.sender) || 0) + 1);
  }
  renderUsers();
  if (message.sender === state.peer) renderMessages();
}

async function refresh() {
  try {
    state.online = (await connection.list()).names;
  } catch { /* shown by the status line */ }
  renderUsers();
}

async function logIn(name) {
  const reply = await connection.login(name);
  if (reply.status !== OK) return false;
  state.me = name;
  $("me").textContent = name;
  $("login-form").hidden = true;
  $("chat").hidden = false;
  await refresh();
  return true;
}

async function send() {
  const text = $("text").value;
  if (!state.peer || !text.trim()) return;
  $("send-error").textContent = "";
  if (text.length > MAX_TEXT) { $("send-error").textContent = "Too long: at most 65535 characters."; return; }
  try {
    const reply = await connection.sendTo(state.peer, text);
    if (reply.status === OK) {
      conversation(state.peer).push({ sender: state.me, text, time: new Date(), mine: true });
      $("text").value = "";
      renderMessages();
    } else {
      $("send-error").textContent = `Not sent: ${state.peer} is not online.`;
    }
  } catch {
    $("send-error").textContent = "Not sent: not connected.";
  }
}

const connection = new Connection(received, async (status) => {
  $("status").textContent = status;
  if (status === "connected" && state.me) {  // back after a reconnect: the same name again
    if (!(await connection.login(state.me).then((r) => r.status === OK, () => false))) {
      $("status").textContent = `connected, but ${state.me} was taken meanwhile`;
    }
    await refresh();
  }
});

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  $("login-error").textContent = "";
  try {
    if (!(await logIn(name))) $("login-error").textContent = "That name is taken or not allowed (1-20 characters, no spaces).";
  } catch {
    $("login-error").textContent = "Not connected yet: try again in a moment.";
  }
});
$("refresh").addEventListener("click", refresh);
$("logout").addEventListener("click", async () => {
  try { await connection.logout(); } catch { /* gone anyway */ }
  state.me = null;
  $("me").textContent = "";
  $("chat").hidden = true;
  $("login-form").hidden = false;
});
$("send-form").addEventListener("submit", (event) => { event.preventDefault(); send(); });
$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); send(); }
});
