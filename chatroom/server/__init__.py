"""The chat server (``chatroom-server``): its modules, by role, are mapped in the README."""

from .connection.chatserver import ChatServer

__all__ = ["ChatServer"]
