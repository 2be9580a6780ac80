"""The terminal chat client (``chatroom-client``): its modules are mapped in the README."""
