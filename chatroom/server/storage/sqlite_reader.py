"""A second connection to the database, in a thread of its own, for the reads that may take
long: a search for a word common in other people's conversations reads much of the search
index before it has what the asker may see, and the unread counts read all of an account's
direct history since its markers. On the writer's thread such a read held up every write
queued behind it, and with them every sender of history (senders wait once the writer is
behind: see sqlite_worker), so one client searching in a loop slowed everyone's chat. Here
it only takes a core's time: WAL lets it read while the writer commits."""

from .sqlite_worker import SQLiteWorker


class SQLiteReader(SQLiteWorker):
    """A worker that only reads (its ``call``): its connection may not write, and no batch is
    ever handed to it. What a read sees is what was committed when it began: a caller that
    must see its own writes waits for them first (SQLiteWorker.wait_until_written)."""

    reads_only = True
