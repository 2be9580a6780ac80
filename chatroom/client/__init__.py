"""The terminal chat client.

- :mod:`.cli`: ``chatroom-client``, the command line;
- :mod:`.connection`: the socket to the server, replies matched to requests;
- :mod:`.commands`: what the user types, parsed into requests;
- :mod:`.core`: :class:`~.core.Client`, a command in, its outcome out as text;
- :mod:`.display`: how messages and names are shown;
- :mod:`.plain`: the front end for scripts (stdin not a terminal);
- :mod:`.terminal`: the interactive prompt.
"""
