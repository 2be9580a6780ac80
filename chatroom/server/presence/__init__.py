"""Presence and routing: who is logged in and where, on one server or across a cluster."""
