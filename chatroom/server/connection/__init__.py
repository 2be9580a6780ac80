"""The connection side: listeners, sessions, their output queues, streams and limits."""
