"""Rooms: group conversations, their members and owners, and the requests about them."""
