"""chatroom: a chat server, a terminal chat client, and a browser client. The README maps the
modules."""

__version__ = "0.2.0"
