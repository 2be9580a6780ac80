// Text from other people, made safe to show: the terminal client's rule (chatroom/client/
// display.py). Control characters, bidi overrides and isolates, invisible characters and line
// separators are shown as visible escapes (\u202e), so that a message can neither reverse
// itself (the "gnp.exe" trick) nor hide text; zero-width joiners stay between two visible
// characters (emoji sequences, Persian and Indic words). Links are http and https only, built
// as elements (never markup), opening apart from the page.

const JOINERS = "\u200c\u200d";
const INVISIBLE = "\u061c\u200b\u200e\u200f\u2028\u2029\u2060\ufeff\u202a-\u202e\u2066-\u2069";
// Newlines and tabs are text here (the page wraps lines); every other C0, DEL and C1 is not.
const UNSAFE = new RegExp(
  `[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f${INVISIBLE}]` +
    `|^[${JOINERS}]|[${JOINERS}]$|(?<=[\\s${JOINERS}])[${JOINERS}]|[${JOINERS}](?=[\\s${JOINERS}])`,
  "gu",
);
const UNSAFE_ANYWHERE = new RegExp(UNSAFE.source, "u");
const LINK = /https?:\/\/[^\s<>"'`]+/gu;
const TRAILING = /[.,;:!?)\]}'"]+$/u;

export function escapeChar(char) {
  const code = char.codePointAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
}

// The text with every unsafe character written as its escape (for plain-text places: the
// title, a notification).
export function escaped(text) {
  return text.replace(UNSAFE, escapeChar);
}

// Append text to node: safe characters as text, unsafe ones as marked escapes.
function appendEscaped(node, text) {
  let position = 0;
  for (const match of text.matchAll(UNSAFE)) {
    if (match.index > position) node.append(text.slice(position, match.index));
    const mark = document.createElement("span");
    mark.className = "escape";
    mark.textContent = escapeChar(match[0]);
    mark.title = "a character that could disguise the text, shown as its code";
    node.append(mark);
    position = match.index + match[0].length;
  }
  if (position < text.length) node.append(text.slice(position));
}

// Append a message's text to node: escaped, with its http and https links clickable.
export function appendMessage(node, text) {
  let position = 0;
  for (const match of text.matchAll(LINK)) {
    const url = match[0].replace(TRAILING, "");
    if (UNSAFE_ANYWHERE.test(url)) continue;  // a disguised link stays text
    appendEscaped(node, text.slice(position, match.index));
    const link = document.createElement("a");
    link.href = url;
    link.textContent = url;
    link.rel = "noopener noreferrer";
    link.target = "_blank";
    node.append(link);
    position = match.index + url.length;
  }
  appendEscaped(node, text.slice(position));
}

const ACTION = "\x01ACTION ";

// The text that says text as an action, as IRC's /me does (a CTCP ACTION).
export function asAction(text) {
  return `${ACTION}${text}\x01`;
}

// What an IRC user's /me says (a text "\x01ACTION waves\x01": "waves"), or null: shown as
// IRC clients show it, "* bob waves".
export function actionOf(text) {
  if (text.startsWith(ACTION) && text.endsWith("\x01") && text.length > ACTION.length + 1) {
    return text.slice(ACTION.length, -1);
  }
  return null;
}

// IRC's formatting codes (an IRC user's bold, italics...): styles, not escapes, as the terminal
// client shows them. Colours, reverse and monospace are dropped (a colour's digits with them,
// as IRC clients read them).
const FORMAT = /[\x02\x1d\x1f\x1e\x11\x16\x0f]|\x03(?:[0-9]{1,2}(?:,[0-9]{1,2})?)?/gu;
const STYLES = { "\x02": "bold", "\x1d": "italic", "\x1f": "underline", "\x1e": "strike" };

// Append a message's text to node as appendMessage does, its IRC formatting as styled spans.
export function appendFormatted(node, text) {
  const on = new Set();
  let position = 0;
  const run = (end) => {
    if (end <= position) return;
    let into = node;
    if (on.size) {
      into = document.createElement("span");
      into.className = [...on].map((style) => `irc-${style}`).join(" ");
      node.append(into);
    }
    appendMessage(into, text.slice(position, end));
  };
  for (const match of text.matchAll(FORMAT)) {
    run(match.index);
    position = match.index + match[0].length;
    const style = STYLES[match[0][0]];
    if (match[0] === "\x0f") on.clear();
    else if (style) on.has(style) ? on.delete(style) : on.add(style);
  }
  run(text.length);
}
