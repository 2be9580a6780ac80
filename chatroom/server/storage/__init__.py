"""What the server remembers: accounts, offline messages and history, in SQLite or Redis."""
