"""The browser client as a new user finds it, in a real headless chromium: on a phone, for
registered users (password, offline messages, history, a reload), hostile text, presence
pushed, and the small things (title, links, keyboard, notifications)."""

import json
import os
from pathlib import Path

import gevent
import pytest

from chatroom.device_frames import Away, Mark, Marked, PresenceState, PresenceStatus
from chatroom.protocol import (
    Authenticate,
    DirectMessage,
    Hello,
    Incoming,
    ListUsers,
    Login,
    Logout,
    Register,
    Response,
    SendTo,
    Status,
    UserList,
    Watch,
)
from chatroom.room_frames import RoomMessage
from chatroom.testing import OK, WAIT
from tests.browsers import click, log_in, text_of, type_into, until
from tests.terminals import register

pytestmark = pytest.mark.process

DOCS = Path(__file__).resolve().parent.parent / "docs"


def by_css(css):
    from selenium.webdriver.common.by import By

    return By.CSS_SELECTOR, css


def screenshot(driver, name, tmp_path):
    """Into docs/ with CHATROOM_UPDATE_DOCS=1 (so that a test run leaves the tree as it was)."""
    shot = DOCS / name if os.environ.get("CHATROOM_UPDATE_DOCS") else tmp_path / name
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def registered_peer(peer_at, address, name, password="pw"):
    peer = peer_at(address)
    assert peer.request(Hello(2)) == OK and peer.request(Register(name, password)) == OK
    return peer


def open_page(driver, url):
    driver.get(url)
    until(driver, lambda d: text_of(d, "status") == "connected", "the connection")


def log_in_with_password(driver, url, name, password="pw"):
    open_page(driver, url)
    type_into(driver, "name", name)
    click(driver, "#login")
    until(driver, lambda d: d.find_element(*By_ID("password")).is_displayed(), "the password field")
    type_into(driver, "password", password)
    click(driver, "#login")
    until(driver, lambda d: text_of(d, "me") == name, "the login")


def test_on_a_phone_one_column_the_messages_take_the_width_and_nothing_scrolls_sideways(
    web_server, browser, logged_in, tmp_path
):
    browser.set_window_size(390, 844)
    log_in(browser, web_server.web_url, "phone")
    bob = logged_in(web_server.address, "bob")
    long_word = "https://example.org/" + "a" * 120
    assert bob.request(SendTo("phone", "a sentence of ordinary words that must wrap between them " + long_word)) == OK
    until(browser, lambda d: d.find_elements(*by_css('.user[data-name="bob"]')), "bob, who wrote")
    width = browser.execute_script("return window.innerWidth")
    assert browser.find_element(*by_css(".people")).size["width"] >= 0.9 * width  # the list, alone
    click(browser, '.user[data-name="bob"]')
    until(browser, lambda d: "ordinary words" in text_of(d, "messages"), "the message")
    assert not browser.find_element(*by_css(".people")).is_displayed()
    assert browser.find_element(*By_ID("messages")).size["width"] >= 0.9 * width
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    # No word is broken inside: each line of the sentence ends at a space.
    lines = browser.execute_script(
        """
        const text = document.querySelector('#messages .text');
        const range = document.createRange(), tops = new Map();
        const node = text.firstChild;
        for (let i = 0; i < node.length; i++) {
          range.setStart(node, i); range.setEnd(node, i + 1);
          const top = Math.round(range.getBoundingClientRect().top);
          tops.set(top, (tops.get(top) || '') + node.data[i]);
        }
        return [...tops.values()];
        """
    )
    assert len(lines) >= 2 and all(line.endswith(" ") for line in lines[:-1]), lines
    screenshot(browser, "web-phone.png", tmp_path)
    click(browser, "#back")
    until(browser, lambda d: d.find_element(*by_css(".people")).is_displayed(), "the list again")


def By_ID(element_id):  # noqa: N802 (as selenium's By.ID reads)
    from selenium.webdriver.common.by import By

    return By.ID, element_id


def test_a_registered_user_logs_in_reads_what_was_kept_and_stays_logged_in_across_a_reload(
    web_server, browser, peer_at, tmp_path
):
    alice = registered_peer(peer_at, web_server.address, "alice")
    bob = registered_peer(peer_at, web_server.address, "bob")
    assert bob.request(SendTo("alice", "said while you were here")) == OK
    assert alice.reply(Logout()) == OK  # (then nothing more is relayed to her: it is kept)
    alice.close()
    assert bob.request(SendTo("alice", "kept while you were away")) == Response(Status.STORED)
    open_page(browser, web_server.web_url)
    type_into(browser, "name", "alice")
    click(browser, "#login")
    until(browser, lambda d: d.find_element(*By_ID("password")).is_displayed(), "the password field")
    form_width = browser.find_element(*By_ID("login-form")).size["width"]
    type_into(browser, "password", "wrong")
    click(browser, "#login")
    until(browser, lambda d: text_of(d, "login-error") == "wrong password.", "the reason")
    assert browser.find_element(*By_ID("login-form")).size["width"] == form_width  # kept its width
    type_into(browser, "password", "pw")
    click(browser, "#login")
    until(browser, lambda d: text_of(d, "me") == "alice", "the login")
    # Both unread: the one said while alice was on too (her client then set no marker).
    until(browser, lambda d: d.find_element(*by_css('.user[data-name="bob"] .unread')).text == "2", "unread")
    assert browser.title == "(2) chatroom"
    click(browser, '.user[data-name="bob"]')
    until(browser, lambda d: "said while you were here" in text_of(d, "messages"), "the history")
    assert "kept while you were away" in text_of(browser, "messages")
    first_unread = until(browser, lambda d: d.find_element(*by_css("#messages .first-unread .text")), "1st unread")
    assert first_unread.text == "said while you were here"  # (the conversation opens there)
    assert browser.title == "chatroom"
    token = browser.execute_script("return sessionStorage.getItem('chatroom.session')")
    kept = json.loads(token)  # the token, never the password
    assert set(kept) == {"name", "token", "open", "peer"} and kept["token"] != "pw" and len(kept["token"]) >= 32
    browser.refresh()
    until(browser, lambda d: text_of(d, "me") == "alice", "logged in again after the reload")
    until(browser, lambda d: "said while you were here" in text_of(d, "messages"), "the conversation, open again")
    assert bob.request(ListUsers()) == UserList(("alice", "bob"))
    click(browser, "#logout")
    until(browser, lambda d: d.find_element(*By_ID("login-form")).is_displayed(), "the login form")
    open_page(browser, web_server.web_url)
    assert browser.find_element(*By_ID("login-form")).is_displayed()


def test_register_and_change_the_password_from_the_page(web_server, browser, peer_at):
    open_page(browser, web_server.web_url)
    type_into(browser, "name", "newbie")
    click(browser, "#register")
    until(browser, lambda d: d.find_element(*By_ID("password-again")).is_displayed(), "both password fields")
    type_into(browser, "password", "first one")
    type_into(browser, "password-again", "first one")
    click(browser, "#login")
    until(browser, lambda d: text_of(d, "me") == "newbie", "registered and logged in")
    click(browser, "#account")
    type_into(browser, "old-password", "first one")
    type_into(browser, "new-password", "second one")
    type_into(browser, "new-password-again", "second one")
    click(browser, "#change-password")
    until(browser, lambda d: text_of(d, "status") == "password changed", "the change")
    click(browser, "#logout")
    check = peer_at(web_server.address)
    assert check.request(Hello(2)) == OK
    from chatroom.protocol import Authenticate

    assert check.request(Authenticate("newbie", "second one")) == OK


def test_hostile_text_is_shown_escaped_and_links_are_links(web_server, browser, logged_in):
    log_in(browser, web_server.web_url, "webby")
    mallory = logged_in(web_server.address, "mallory")
    assert mallory.request(SendTo("webby", "see \u202egnp.exe and a bell\x07 https://example.org/x.")) == OK
    click(browser, '.user[data-name="mallory"]')
    until(browser, lambda d: "gnp.exe" in text_of(d, "messages"), "the message")
    marks = [e.text for e in browser.find_elements(*by_css("#messages .escape"))]
    assert marks == ["\\u202e", "\\x07"]
    link = browser.find_element(*by_css("#messages a"))
    assert link.get_attribute("href") == "https://example.org/x"  # the full stop is not part of it
    assert link.get_attribute("rel") == "noopener noreferrer"
    assert not browser.find_elements(*by_css("#messages b, #messages img"))
    # An IRC user's /me reads as IRC clients show it; a text only like it is escaped as any.
    assert mallory.request(SendTo("webby", "\x01ACTION waves\x01")) == OK
    assert mallory.request(SendTo("webby", "\x01ACTION \x01")) == OK
    until(browser, lambda d: len(d.find_elements(*by_css("#messages .message"))) == 3, "the two texts")
    action, lookalike = browser.find_elements(*by_css("#messages .message"))[1:]
    assert "action" in action.get_attribute("class").split()
    assert action.find_element(*by_css(".sender")).text == "* mallory"
    assert action.find_element(*by_css(".text")).text == "waves"
    assert lookalike.find_element(*by_css(".text")).text == "\\x01ACTION \\x01"
    # An IRC user's formatting: styles (colours dropped), where any other control is escaped.
    assert mallory.request(SendTo("webby", "a \x02bold\x02 \x0304red\x03 \x1ditalic\x0f plain\x07")) == OK
    until(browser, lambda d: len(d.find_elements(*by_css("#messages .message"))) == 4, "the formatted text")
    formatted = browser.find_elements(*by_css("#messages .message .text"))[3]
    assert formatted.text == "a bold red italic plain\\x07"
    assert [e.text for e in formatted.find_elements(*by_css(".irc-bold"))] == ["bold"]
    assert [e.text for e in formatted.find_elements(*by_css(".irc-italic"))] == ["italic"]
    assert [e.text for e in formatted.find_elements(*by_css(".escape"))] == ["\\x07"]


def test_presence_is_pushed_and_the_list_is_reached_by_keyboard(web_server, browser, logged_in, peer_at):
    from selenium.webdriver.common.keys import Keys

    log_in(browser, web_server.web_url, "webby")
    carol = peer_at(web_server.address)
    assert carol.reply(Hello(4)) == OK and carol.reply(Login("carol")) == OK
    # Presence tells of those one shares a conversation (or a room) with: carol, once she writes.
    assert carol.reply(SendTo("webby", "hi")) == OK
    until(browser, lambda d: d.find_elements(*by_css('.user[data-name="carol"] .dot.online')), "carol online")
    assert carol.reply(Away(True, "lunch")) == OK
    until(browser, lambda d: d.find_elements(*by_css('.user[data-name="carol"] .dot.away')), "carol away")
    assert "away: lunch" in browser.find_element(*by_css('.user[data-name="carol"]')).get_attribute("aria-label")
    assert carol.reply(Watch(True)) == OK  # (she hears of webby: they share a conversation)
    click(browser, "#away")
    with gevent.Timeout(WAIT):
        while carol.next_push() != PresenceStatus((("webby", PresenceState.AWAY, ""),)):
            pass
    until(browser, lambda d: text_of(d, "away") == "Back", "the button saying Back")
    carol.close()
    until(browser, lambda d: d.find_elements(*by_css('.user[data-name="carol"].offline')), "carol gone")
    dave = logged_in(web_server.address, "dave")
    assert dave.request(SendTo("webby", "hello")) == OK
    until(browser, lambda d: d.find_elements(*by_css('.user[data-name="dave"] .dot.online')), "dave online")
    # The list is redrawn as presence comes (the focus stays on its name): what has the focus
    # is looked for again when it was redrawn between finding it and using it.
    from selenium.common.exceptions import ElementNotInteractableException

    def focused_name(driver):
        return driver.switch_to.active_element.get_attribute("data-name")

    def pressed(driver, key) -> bool:
        try:
            driver.switch_to.active_element.send_keys(key)
        except ElementNotInteractableException:  # (found mid-redraw: the key was not sent)
            return False
        return True

    def press(key):
        until(browser, lambda d: pressed(d, key), f"the key {key!r}")

    browser.find_element(*By_ID("talk-to")).send_keys(Keys.TAB)  # from the name box to the list
    until(browser, lambda d: focused_name(d) == "carol", "carol's entry focused")  # (in the order of names)
    press(Keys.TAB)
    until(browser, lambda d: focused_name(d) == "dave", "dave's entry focused")
    press(Keys.ENTER)
    until(browser, lambda d: text_of(d, "peer") == "dave", "the conversation, opened by Enter")


def test_a_conversation_with_anyone_by_name_and_a_notification_while_hidden(web_server, browser, logged_in):
    from selenium.webdriver.common.keys import Keys

    log_in(browser, web_server.web_url, "webby")
    type_into(browser, "talk-to", "erin", Keys.ENTER)  # not online: the conversation opens anyway
    until(browser, lambda d: text_of(d, "peer") == "erin", "the conversation")
    type_into(browser, "text", "are you there?", Keys.ENTER)
    until(browser, lambda d: "not online" in text_of(d, "send-error"), "the reason")
    # Notifications, on a click: the browser's own are recorded instead of shown.
    browser.execute_script(
        """
        window.shown = [];
        window.Notification = class { constructor(title, options) { window.shown.push([title, options.body]); }
          static requestPermission() { return Promise.resolve('granted'); } };
        Object.defineProperty(document, 'hidden', { get: () => true });
        """
    )
    click(browser, "#notify")
    until(browser, lambda d: d.find_element(*By_ID("notify")).get_attribute("aria-pressed") == "true", "on")
    erin = logged_in(web_server.address, "erin")
    assert erin.request(SendTo("webby", "here now \u202e")) == OK
    until(browser, lambda d: d.execute_script("return window.shown"), "a notification")
    assert browser.execute_script("return window.shown") == [["erin", "here now \\u202e"]]
    assert browser.title == "(1) chatroom"
    assert erin.request(ListUsers()) == UserList(("erin", "webby"))
    type_into(browser, "text", "/me waves", Keys.ENTER)  # an action, as IRC's /me
    assert erin.next_event() == Incoming("webby", "\x01ACTION waves\x01")
    until(browser, lambda d: d.find_elements(*by_css("#messages .message.mine.action")), "the action shown")
    shown = browser.find_element(*by_css("#messages .message.mine.action"))
    assert (shown.find_element(*by_css(".sender")).text, shown.find_element(*by_css(".text")).text) == ("* me", "waves")


def test_older_history_comes_in_pages_on_scrolling_up(web_server, browser, peer_at):
    alice = peer_at(web_server.address)
    assert alice.reply(Hello(4)) == OK and alice.reply(Register("alice", "pw")) == OK
    bob = registered_peer(peer_at, web_server.address, "bob")
    for n in range(120):
        assert bob.request(SendTo("alice", f"number {n}")) == OK
    *_, newest = pushes(alice, 120)
    assert alice.reply(Mark("bob", newest.id)) == OK  # all read: the conversation opens at its end
    alice.close()
    log_in_with_password(browser, web_server.web_url, "alice")
    type_into(browser, "talk-to", "bob\n")
    count = lambda d: len(d.find_elements(*by_css("#messages .message")))  # noqa: E731
    until(browser, lambda d: count(d) == 50, "the newest page")
    assert "number 119" in text_of(browser, "messages") and "number 69" not in text_of(browser, "messages")
    for pages in (100, 120):
        browser.execute_script("document.getElementById('messages').scrollTop = 0")
        until(browser, lambda d, pages=pages: count(d) == pages, f"{pages} messages")
    assert text_of(browser, "messages").index("number 0") < text_of(browser, "messages").index("number 119")


def test_rooms_beside_people_with_members_topic_unread_and_history(web_server, browser, peer_at):
    from chatroom.room_frames import Join, SetTopic

    bob = peer_at(web_server.address)
    assert bob.reply(Hello(3)) == OK and bob.reply(Register("bob", "pw")) == OK
    assert bob.reply(Join("#team")) == OK and bob.reply(SetTopic("#team", "the plan")) == OK
    for n in range(60):
        assert bob.reply(SendTo("#team", f"earlier {n}")) == OK
    log_in(browser, web_server.web_url, "webby")
    type_into(browser, "talk-to", "#team\n")  # joins, and opens the room
    until(browser, lambda d: d.find_elements(*by_css('.room[data-name="#team"]')), "the room in the list")
    until(browser, lambda d: text_of(d, "topic") == "the plan", "the topic")
    click(browser, "#members summary")
    until(browser, lambda d: d.find_elements(*by_css('#member-list [data-name="bob"] .dot.online')), "bob, online")
    until(browser, lambda d: "earlier 59" in text_of(d, "messages"), "the newest history")
    assert "earlier 9" not in text_of(browser, "messages")
    browser.execute_script("document.getElementById('messages').scrollTop = 0")
    until(browser, lambda d: "earlier 9" in text_of(d, "messages"), "older pages")
    type_into(browser, "text", "hello room\n")
    until(browser, lambda d: "hello room" in text_of(d, "messages"), "one's own message, from the room")
    assert any(isinstance(e, RoomMessage) and e.text == "hello room" for e in drain_pushes(bob))
    type_into(browser, "talk-to", "carol\n")  # away from the room: its messages count as unread
    assert bob.reply(SendTo("#team", "are you there?")) == OK
    until(browser, lambda d: d.find_element(*by_css('.room[data-name="#team"] .unread')).text == "1", "unread")
    click(browser, '.room[data-name="#team"]')
    until(browser, lambda d: "are you there?" in text_of(d, "messages"), "the message")
    guest = peer_at(web_server.address)
    assert guest.reply(Hello(3)) == OK and guest.reply(Login("gus")) == OK and guest.reply(Join("#team")) == OK
    until(browser, lambda d: "gus joined" in text_of(d, "messages"), "the guest's joining")
    guest.close()  # (out of the room as it goes, and how it went said)
    until(browser, lambda d: "gus left (disconnected)" in text_of(d, "messages"), "the guest's leaving")
    type_into(browser, "talk-to", "#TEAM\n")  # (the room under another case: none of its own)
    said = "#TEAM: looks like the room #team, which is there already"
    until(browser, lambda d: text_of(d, "status") == said, "why not")
    type_into(browser, "talk-to", "#open\n")  # (a guest's room: no owner, until a registered member comes)
    until(browser, lambda d: "webby joined" in text_of(d, "messages"), "the new room")
    assert bob.reply(Join("#open")) == OK
    until(browser, lambda d: "bob owns the room now" in text_of(d, "messages"), "its first registered member's")


def drain_pushes(peer) -> list:
    """What the peer was pushed so far (the reply to a LIST marks the end)."""
    from chatroom.protocol import ListUsers

    peer.reply(ListUsers())
    pushed, peer.pushed = peer.pushed, []
    return pushed


def test_one_account_in_the_terminal_and_the_browser_own_messages_and_markers(web_server, browser, terminal, peer_at):
    """What the terminal sends shows in the same user's browser, as theirs; a marker set on one
    session shows on the others (the badge goes; the other device hears of it)."""
    bob = registered_peer(peer_at, web_server.address, "bob")
    term = terminal(web_server.address)
    register(term, "alice", "pw")
    log_in_with_password(browser, web_server.web_url, "alice")
    phone = peer_at(web_server.address)  # a third session of alice's
    assert phone.reply(Hello(4)) == OK and phone.reply(Authenticate("alice", "pw")) == OK
    term.type("sendto bob from the terminal\r")
    assert bob.next_event().text == "from the terminal"
    term.type("logout\r")  # (a terminal shows, so reads, everything: its markers are another test's)
    term.wait_for_input_line("> ")
    until(browser, lambda d: d.find_element(*by_css('.user[data-name="bob"]')), "the conversation with bob")
    assert bob.request(SendTo("alice", "read me")) == OK
    until(browser, lambda d: d.find_element(*by_css('.user[data-name="bob"] .unread')).text == "1", "unread")
    [read_me] = [m for m in pushes(phone, 2) if type(m) is DirectMessage]
    assert phone.reply(Mark("bob", read_me.id)) == OK  # read on the phone: no longer unread here
    until(browser, lambda d: d.find_element(*by_css('.user[data-name="bob"] .unread')).text == "", "the badge gone")
    click(browser, '.user[data-name="bob"]')
    mine = until(browser, lambda d: [m.text for m in d.find_elements(*by_css("#messages .message.mine .text"))], "mine")
    assert mine == ["from the terminal"]
    assert bob.request(SendTo("alice", "seen at once")) == OK
    [seen] = [m for m in pushes(phone, 1) if type(m) is DirectMessage]
    with gevent.Timeout(WAIT):
        while (marked := phone.next_push()) != Marked("bob", seen.id):
            pass  # (the browser shows it, so it is read: the phone hears the marker moved)
    assert marked == Marked("bob", seen.id)


def pushes(peer, count) -> list:
    with gevent.Timeout(WAIT):
        return [peer.next_push() for _ in range(count)]


def test_a_session_ended_from_another_device_shows_the_login_and_a_reload_stays_out(web_server, browser, peer_at):
    """END-SESSION from the phone: the page says so and shows the login, forgets its token,
    and neither its reconnect nor a reload logs it in again."""
    from chatroom.device_frames import EndSession, Sessions

    registered_peer(peer_at, web_server.address, "alice").close()
    log_in_with_password(browser, web_server.web_url, "alice")
    phone = peer_at(web_server.address)
    assert phone.reply(Hello(4)) == OK and phone.reply(Authenticate("alice", "pw")) == OK
    [pages] = [entry.number for entry in phone.reply(Sessions()).sessions if entry.transport == "websocket"]
    assert phone.reply(EndSession(pages)) == OK
    said = "This session was ended from another of your devices: log in to come back."
    until(browser, lambda d: text_of(d, "login-error") == said, "why the login is back")
    assert browser.find_element(*By_ID("login-form")).is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('chatroom.session')") is None
    until(browser, lambda d: text_of(d, "status") == "connected", "the reconnection")
    browser.refresh()
    open_page(browser, web_server.web_url)
    assert browser.find_element(*By_ID("login-form")).is_displayed()
    assert [entry.transport for entry in phone.reply(Sessions()).sessions] == ["tcp"]
