// The chatroom browser client: the page. Every piece of text from the network goes into the
// page as text (text.js), never as HTML. A registered user's login survives a reload through a
// session token kept in sessionStorage (never the password), with the conversations that
// were open.

import {
  Connection, EVENT_WORDS, HISTORY_PAGE, INCOMING, MARKED, MAX_NAME, MAX_TEXT, MEMBER_LIST, OK, OWN_MESSAGE, PRESENCE,
  PRESENCE_STATUS, REGISTERED, ROOM_EVENT, ROOM_HISTORY, ROOM_LIST, ROOM_MESSAGE, SESSION_ENDED, STORED, STORED_MESSAGE, TOKEN,
  UNREAD_COUNTS, reasonText,
} from "./protocol.js";
import { actionOf, appendFormatted, appendMessage, asAction, escaped } from "./text.js";

const PAGE = 50;  // history entries asked for at a time
const SAVED = "chatroom.session";  // sessionStorage: {name, token, open: [names]}

const $ = (id) => document.getElementById(id);
const state = {
  me: null,
  registered: false,
  token: null,
  peer: null,
  online: new Set(),
  away: new Map(),  // name -> its away message (those online and away)
  conversations: new Map(),  // name or #room -> {entries: [], oldest: id, complete: bool, loaded: bool}
  rooms: new Set(),  // the rooms one is in
  unread: new Map(),
  markers: new Map(),  // name or #room -> the id of the last message read (a BigInt), shared by one's devices
  notify: false,
  asking: null,  // the name whose password the form asks for
};

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;  // text, never HTML
  return node;
}

function clock(date) {
  const today = new Date().toDateString() === date.toDateString();
  return today ? date.toTimeString().slice(0, 5) : `${date.toISOString().slice(5, 10)} ${date.toTimeString().slice(0, 5)}`;
}

function conversation(name) {
  if (!state.conversations.has(name)) {
    state.conversations.set(name, { entries: [], oldest: 0, complete: false, loaded: false });
    save();
  }
  return state.conversations.get(name);
}

function save() {
  if (state.registered && state.token) {
    const open = [...state.conversations.keys()];
    sessionStorage.setItem(SAVED, JSON.stringify({ name: state.me, token: state.token, open, peer: state.peer }));
  }
}

function saved() {
  try { return JSON.parse(sessionStorage.getItem(SAVED)); } catch { return null; }
}

// --- Drawing ----------------------------------------------------------------------------------

// One's own away, as the server tells it (it ends when one sends a message, from any device).
function renderAway() {
  const away = state.away.has(state.me);
  $("away").textContent = away ? "Back" : "Away";
  $("away").setAttribute("aria-pressed", String(away));
}

function renderTitle() {
  const unread = [...state.unread.values()].reduce((sum, n) => sum + n, 0);
  document.title = unread ? `(${unread}) chatroom` : "chatroom";
}

const isRoom = (name) => name.startsWith("#");

// One entry of the sidebar: a room, or a person (with a dot: online or not).
function conversationButton(name) {
  const room = isRoom(name);
  const online = state.online.has(name);
  const unread = state.unread.get(name) || 0;
  const item = element("li");
  const button = element("button", room ? "room" : "user");
  button.type = "button";
  button.dataset.name = name;
  if (name === state.peer) { button.classList.add("active"); button.setAttribute("aria-current", "true"); }
  if (!room && !online) button.classList.add("offline");
  const away = state.away.get(name);
  const status = away === undefined ? (online ? "online" : "offline") : `away${away ? `: ${escaped(away)}` : ""}`;
  const what = room ? `room ${escaped(name)}` : `${escaped(name)}, ${status}`;
  if (away !== undefined) button.title = status;
  button.setAttribute("aria-label", `${what}${unread ? `, ${unread} unread` : ""}`);
  const label = element("span", "name");
  appendMessage(label, name);
  if (!room) button.append(element("span", away !== undefined ? "dot away" : online ? "dot online" : "dot"));
  button.append(label, element("span", "unread", unread ? String(unread) : ""));
  button.addEventListener("click", () => openConversation(name));
  item.append(button);
  return item;
}

function renderUsers() {
  const focused = document.activeElement?.dataset?.name;
  $("rooms").replaceChildren(...[...state.rooms].sort().map(conversationButton));
  const names = new Set([...state.online, ...state.conversations.keys()].filter((name) => !isRoom(name)));
  names.delete(state.me);
  $("users").replaceChildren(...[...names].sort().map(conversationButton));
  if (focused) document.querySelector(`[data-name="${CSS.escape(focused)}"]`)?.focus();
  renderTitle();
}

function messageItem(entry) {
  const action = entry.note ? null : actionOf(entry.text);
  const classes = `${entry.mine ? " mine" : ""}${entry.note ? " note" : ""}${entry.old ? " old" : ""}${action !== null ? " action" : ""}`;
  const item = element("li", `message${classes}${entry.firstUnread ? " first-unread" : ""}`);
  const time = element("time", "", clock(entry.time));
  time.dateTime = entry.time.toISOString();
  const sender = element("span", "sender");
  if (!entry.note) appendMessage(sender, (action !== null ? "* " : "") + (entry.mine ? "me" : entry.sender));
  const text = element("span", "text");
  appendFormatted(text, action ?? entry.text);
  item.append(time, sender, text);
  return item;
}

function renderMessages(keepPlace = false) {
  const list = $("messages");
  const fromBottom = list.scrollHeight - list.scrollTop;
  list.replaceChildren(...(state.peer ? conversation(state.peer).entries : []).map(messageItem));
  list.scrollTop = keepPlace ? list.scrollHeight - fromBottom : list.scrollHeight;
}

function showChat(shown) {
  $("login-form").hidden = shown;
  $("password-form").hidden = true;
  $("chat").hidden = !shown;
  for (const id of ["logout", "notify"]) $(id).hidden = !shown;
  $("notify").hidden = !shown || !("Notification" in window);
  $("account").hidden = !shown || !state.registered;
  $("away").hidden = !shown || connection.version < 4;
  renderAway();
  $("me").textContent = shown ? state.me : "";
}

// --- Conversations ------------------------------------------------------------------------------

async function openConversation(name) {
  state.peer = name;
  const hadUnread = state.unread.has(name);
  state.unread.delete(name);
  const talk = conversation(name);
  $("peer").replaceChildren();
  appendMessage($("peer"), name);
  $("part").hidden = !isRoom(name);
  $("topic").hidden = $("members").hidden = true;
  if (isRoom(name)) showRoom(name);
  $("text").disabled = $("send").disabled = false;
  document.body.classList.add("talking");
  save();
  renderUsers();
  renderMessages();
  $("text").focus();
  if ((state.registered || isRoom(name)) && !talk.loaded) await loadHistory(name, true);
  if (hadUnread && state.markers.has(name)) showFirstUnread(talk, state.markers.get(name));
  markRead(name);
}

// What others said in a conversation after a marker.
function unreadAfter(talk, marker) {
  return talk.entries.filter((entry) => !entry.mine && entry.id !== undefined && entry.id > marker);
}

// Opened with something unread: the conversation opens at its first unread message.
function showFirstUnread(talk, marker) {
  const [first] = unreadAfter(talk, marker);
  if (!first) return;
  for (const entry of talk.entries) entry.firstUnread = entry === first;
  renderMessages();
  document.querySelector("#messages .first-unread")?.scrollIntoView({ block: "start" });
}

// What is shown is read: the marker moves to the newest message shown, for one's other
// devices too (only a registered user has markers).
function markRead(name) {
  if (!state.registered || document.hidden || name !== state.peer) return;
  const newest = conversation(name).entries.reduce((top, entry) => (entry.id !== undefined && entry.id > top ? entry.id : top), 0n);
  if (newest <= (state.markers.get(name) ?? 0n)) return;
  state.markers.set(name, newest);
  connection.mark(name, newest).catch(() => {});
}

// Another device moved a marker: what is unread here is what came after it.
function marked(name, id) {
  if (id > (state.markers.get(name) ?? 0n)) state.markers.set(name, id);
  const talk = state.conversations.get(name);
  const left = talk ? unreadAfter(talk, id).length : 0;
  if (left) state.unread.set(name, left); else state.unread.delete(name);
  renderUsers();
}

// The first page of a conversation's history replaces what this page showed of it (the
// server keeps everything said since the account was made); later pages go on top.
async function loadHistory(name, first) {
  const talk = conversation(name);
  if (talk.complete || talk.loading) return;
  talk.loading = true;
  try {
    const reply = await connection.history(name, PAGE, first ? 0 : talk.oldest);
    if (reply.type !== HISTORY_PAGE && reply.type !== ROOM_HISTORY) return;
    const older = reply.entries.map((e) => {
      const mine = reply.type === ROOM_HISTORY ? e.sender === state.me : e.sent;
      return { sender: reply.type === ROOM_HISTORY ? e.sender : (mine ? state.me : name), mine, text: e.text, time: e.time, old: true, id: e.id };
    });
    if (first) {
      const since = reply.entries.length ? reply.entries[reply.entries.length - 1].time : new Date(0);
      talk.entries = older.concat(talk.entries.filter((entry) => entry.time > since && !entry.old));
    } else {
      talk.entries = older.concat(talk.entries);
    }
    if (reply.entries.length) talk.oldest = reply.entries[0].id;
    talk.complete = reply.entries.length < PAGE;
    talk.loaded = true;
    if (state.peer === name) renderMessages(!first);
  } catch { /* not connected: the next open asks again */ } finally {
    talk.loading = false;
  }
}

// A message in a conversation (a person's, or a room's, ``where``): kept, counted unread
// unless it is one's own, and notified while the tab is hidden (not one kept while away).
function received(where, sender, text, time, kept, id, mine = isRoom(where) && sender === state.me) {
  conversation(where).entries.push({ sender, text, time, mine, id });
  if (!kept && sender !== state.me) state.online.add(sender);  // (writing now)
  // (A registered user's kept messages are in the unread counts the server gives at login.)
  const counted = kept && state.registered && connection.version >= 4;
  if (!mine && !counted && (where !== state.peer || document.hidden)) state.unread.set(where, (state.unread.get(where) || 0) + 1);
  renderUsers();
  if (where === state.peer) { renderMessages(); markRead(where); }
  if (state.notify && document.hidden && !mine && !kept) {
    const title = where === sender ? escaped(sender) : `${escaped(sender)} in ${escaped(where)}`;
    new Notification(title, { body: escaped(text).slice(0, 200), tag: `chatroom-${where}` });
  }
}

// A room: its topic and members, asked for when it is opened (and again as they change).
async function showRoom(room) {
  const reply = await connection.members(room).catch(() => null);
  if (reply?.type !== MEMBER_LIST || state.peer !== room) return;
  $("topic").hidden = !reply.topic;
  $("topic").replaceChildren();
  appendFormatted($("topic"), reply.topic);
  $("members").hidden = false;
  $("members-count").textContent = `${reply.members.length} member${reply.members.length === 1 ? "" : "s"}`;
  $("member-list").replaceChildren(...reply.members.map((member) => {
    const item = element("li", "member");
    item.dataset.name = member.name;
    const label = element("span", "name");
    appendMessage(label, member.name + (member.owner ? " (owner)" : ""));
    item.append(element("span", member.online ? "dot online" : "dot"), label);
    return item;
  }));
}

function roomEvent(event) {
  // (A member out at its logout says how: "logged out" or "disconnected"; a room that had no
  // owner is its first registered member's.)
  const claimed = event.kind === 6 && event.detail === event.actor;
  const template = claimed ? "{actor} owns the room now"
    : (EVENT_WORDS[event.kind] || "{actor}") + (event.kind === 2 && event.detail ? " ({detail})" : "");
  const words = template.replace("{actor}", event.actor).replace("{detail}", event.detail);
  conversation(event.room).entries.push({ note: true, text: words, time: new Date() });
  const gone = (event.kind === 2 && event.actor === state.me) || (event.kind === 3 && event.detail === state.me);
  if (gone) state.rooms.delete(event.room); else if (event.kind !== 7 || event.detail !== state.me) state.rooms.add(event.room);
  if (event.kind === 7 && event.detail === state.me && !state.rooms.has(event.room)) {
    $("status").textContent = `${event.actor} invited you to ${event.room}`;
  }
  renderUsers();
  if (state.peer === event.room) { renderMessages(); showRoom(event.room); }
}

function onPush(message) {
  if (message.type === ROOM_MESSAGE) {
    state.rooms.add(message.room);
    received(message.room, message.sender, message.text, message.time, false, message.id);
  } else if (message.type === ROOM_EVENT) {
    roomEvent(message);
  } else if (message.type === INCOMING || message.type === STORED_MESSAGE) {
    received(message.sender, message.sender, message.text, message.time, message.type === STORED_MESSAGE, message.id);
  } else if (message.type === OWN_MESSAGE) {  // sent from another of one's devices
    received(message.recipient, state.me, message.text, message.time, true, message.id, true);
  } else if (message.type === MARKED) {
    marked(message.conversation, message.id);
  } else if (message.type === PRESENCE_STATUS) {  // (version 4: those one shares something with)
    for (const [name, status, away] of message.changes) {
      if (status === 0) state.online.delete(name); else state.online.add(name);
      if (status === 2) state.away.set(name, away); else state.away.delete(name);
    }
    renderUsers();
    renderAway();
  } else if (message.type === PRESENCE) {
    for (const [name, online] of message.changes) {
      if (online) state.online.add(name); else state.online.delete(name);
    }
    renderUsers();
  } else if (message.type === SESSION_ENDED) {  // (its token is revoked: not logged in again)
    forget();
    $("login-error").textContent = "This session was ended from another of your devices: log in to come back.";
  }
}

async function send() {
  const typed = $("text").value;
  const peer = state.peer;
  if (!peer || !typed.trim()) return;
  // "/me waves": an action, as IRC's /me (a CTCP ACTION, which every client shows "* me waves").
  const text = typed.startsWith("/me ") && typed.slice(4).trim() ? asAction(typed.slice(4)) : typed;
  $("send-error").textContent = "";
  if (text.length > MAX_TEXT) { $("send-error").textContent = "Too long: at most 65535 characters."; return; }
  try {
    const reply = await connection.sendTo(peer, text);
    if (isRoom(peer) && reply.status === OK) {
      $("text").value = "";  // it shows as it comes back, in the room's order
    } else if (reply.status === OK || reply.status === STORED) {
      conversation(peer).entries.push({ sender: state.me, text, time: new Date(), mine: true });
      $("text").value = "";
      renderMessages();
      if (reply.status === STORED) $("send-error").textContent = `${peer} is offline: kept for them.`;
    } else {
      $("send-error").textContent = `Not sent: ${reasonText(reply, peer) || `${peer} is not online`}.`;
    }
  } catch {
    $("send-error").textContent = "Not sent: not connected.";
  }
}

// --- Logging in -------------------------------------------------------------------------------

async function loggedIn(name, registered) {
  state.me = name;
  state.registered = registered;
  if (registered) {
    const reply = await connection.sessionToken().catch(() => null);
    state.token = reply?.type === TOKEN ? reply.token : null;
  }
  save();
  showChat(true);
  if (!connection.extended) state.online = new Set((await connection.list()).names);
  await loadRooms();
  if (registered) await loadUnread();
  renderUsers();
}

// At login: each conversation's marker, and what came after it while one was away.
async function loadUnread() {
  const reply = await connection.unread().catch(() => null);
  if (reply?.type !== UNREAD_COUNTS) return;  // (a server before version 4)
  for (const { conversation: name, marker, count } of reply.entries) {
    state.markers.set(name, marker);
    if (!count) continue;
    state.unread.set(name, count);
    if (!isRoom(name)) conversation(name);
  }
}

async function loadRooms() {
  const reply = await connection.rooms().catch(() => null);
  if (reply?.type === ROOM_LIST) for (const room of reply.rooms) if (room.member) state.rooms.add(room.name);
}

async function joinRoom(room) {
  const reply = await connection.join(room).catch(() => null);
  if (reply?.status !== OK) {
    $("status").textContent = `${room}: ${reply ? reasonText(reply, room) || "cannot join" : "not connected"}`;
    return;
  }
  state.rooms.add(room);
  await openConversation(room);
}

function askPassword(name, newOne) {
  state.asking = { name, newOne };
  $("password-fields").hidden = false;
  $("password-label").textContent = newOne ? `A password for ${escaped(name)}` : `Password for ${escaped(name)}`;
  $("password-again").hidden = $("password-again-label").hidden = !newOne;
  $("password").autocomplete = newOne ? "new-password" : "current-password";
  $("login").textContent = newOne ? "Register" : "Log in";
  $("password").focus();
}

function resetLoginForm() {
  state.asking = null;
  $("password-fields").hidden = true;
  $("password").value = $("password-again").value = "";
  $("login").textContent = "Log in";
}

function failed(reply, name, fallback) {
  $("login-error").textContent = `${reasonText(reply, name) || fallback}.`;
}

async function submitLogin(registering) {
  const name = $("name").value.trim();
  const error = $("login-error");
  error.textContent = "";
  if (!name || name.length > MAX_NAME || /\s/u.test(name)) {
    error.textContent = "A name is 1 to 20 characters, with no spaces.";
    return;
  }
  const asking = state.asking?.name === name ? state.asking : null;
  try {
    if (registering && !asking?.newOne) { askPassword(name, true); return; }
    if (asking) {
      const password = $("password").value;
      if (!password) { error.textContent = "Type the password first."; return; }
      if (asking.newOne && password !== $("password-again").value) { error.textContent = "The two passwords differ."; return; }
      const reply = asking.newOne ? await connection.register(name, password) : await connection.authenticate(name, password);
      if (reply.status !== OK) { failed(reply, name, asking.newOne ? "That name cannot be registered" : "Wrong password"); return; }
      resetLoginForm();
      await loggedIn(name, true);
      return;
    }
    const reply = await connection.login(name);
    if (reply.status === REGISTERED) { askPassword(name, false); return; }
    if (reply.status !== OK) { failed(reply, name, "That name is taken or not allowed"); return; }
    await loggedIn(name, false);
  } catch {
    error.textContent = "Not connected yet: try again in a moment.";
  }
}

// After a reload or a reconnect: log in again, with the session token if there is one.
async function logInAgain() {
  const remembered = state.me ? { name: state.me, token: state.token } : saved();
  if (!remembered?.name) return;
  let reply;
  if (remembered.token) reply = await connection.resume(remembered.name, remembered.token).catch(() => null);
  else if (!state.registered) reply = await connection.login(remembered.name).catch(() => null);
  if (reply?.status !== OK) {
    if (remembered.token) sessionStorage.removeItem(SAVED);
    if (state.me) $("status").textContent = `${state.me} could not log in again: ${reasonText(reply || {}, state.me) || "name taken"}`;
    state.me = null;
    state.token = null;
    showChat(false);
    return;
  }
  if (!state.me) {  // a reload: the conversations that were open come back
    state.token = remembered.token;
    state.me = remembered.name;
    state.registered = Boolean(remembered.token);
    for (const name of remembered.open || []) conversation(name);
    showChat(true);
    await loadRooms();
    renderUsers();
    if (remembered.peer) await openConversation(remembered.peer);
  }
}

// Logged out: by this page, or by another of the user's devices. Nothing of the session is kept.
function forget() {
  sessionStorage.removeItem(SAVED);
  Object.assign(state, { me: null, registered: false, token: null, peer: null });
  state.conversations.clear();
  state.rooms.clear();
  state.unread.clear();
  document.body.classList.remove("talking");
  showChat(false);
  renderTitle();
}

async function changePassword() {
  const error = $("password-error");
  const [old, fresh, again] = ["old-password", "new-password", "new-password-again"].map((id) => $(id).value);
  if (fresh !== again) { error.textContent = "The two new passwords differ."; return; }
  try {
    const reply = await connection.changePassword(old, fresh);
    if (reply.status !== OK) { error.textContent = `${reasonText(reply, state.me) || "Not changed"}.`; return; }
    const token = await connection.sessionToken();  // the old ones were revoked with the password
    state.token = token.type === TOKEN ? token.token : null;
    save();
    for (const id of ["old-password", "new-password", "new-password-again"]) $(id).value = "";
    error.textContent = "";
    showChat(true);
    $("status").textContent = "password changed";
  } catch {
    error.textContent = "Not connected: try again in a moment.";
  }
}

// --- Wiring -----------------------------------------------------------------------------------

const connection = new Connection(onPush, (status) => { $("status").textContent = status; }, logInAgain);

$("login-form").addEventListener("submit", (event) => { event.preventDefault(); submitLogin(false); });
$("register").addEventListener("click", () => submitLogin(true));
$("name").addEventListener("input", resetLoginForm);
$("logout").addEventListener("click", async () => {
  try { await connection.logout(); } catch { /* gone anyway */ }
  forget();
});
$("account").addEventListener("click", () => { $("chat").hidden = true; $("password-form").hidden = false; $("old-password").focus(); });
$("cancel-password").addEventListener("click", () => showChat(true));
$("password-form").addEventListener("submit", (event) => { event.preventDefault(); changePassword(); });
$("away").addEventListener("click", () => {
  connection.away(!state.away.has(state.me)).catch(() => {});  // (the change comes back as presence)
});

$("notify").addEventListener("click", async () => {
  state.notify = !state.notify && (await Notification.requestPermission()) === "granted";
  $("notify").setAttribute("aria-pressed", String(state.notify));
  $("notify").textContent = state.notify ? "Notifying" : "Notify";
});
$("talk-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("talk-to").value.trim();
  if (!name || name.length > MAX_NAME + (isRoom(name) ? 1 : 0) || /\s/u.test(name)) return;
  $("talk-to").value = "";
  if (isRoom(name)) joinRoom(name); else openConversation(name);
});
$("part").addEventListener("click", async () => {
  const room = state.peer;
  const reply = await connection.part(room).catch(() => null);
  if (reply?.status === OK) {
    state.rooms.delete(room);
    state.conversations.delete(room);
    state.peer = null;
    document.body.classList.remove("talking");
    $("peer").textContent = "Pick someone to talk to";
    $("part").hidden = $("topic").hidden = $("members").hidden = true;
    save();
    renderUsers();
    renderMessages();
  }
});
$("back").addEventListener("click", () => { document.body.classList.remove("talking"); state.peer = null; save(); renderUsers(); });
$("send-form").addEventListener("submit", (event) => { event.preventDefault(); send(); });
$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); send(); }
});
$("messages").addEventListener("scroll", () => {
  if ($("messages").scrollTop < 40 && state.peer && (state.registered || isRoom(state.peer))) loadHistory(state.peer, false);
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.peer) { state.unread.delete(state.peer); renderUsers(); markRead(state.peer); }
});
