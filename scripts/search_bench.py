"""How long a search takes over a million stored messages (SQLite, FTS5); the figures go into
docs/performance.md. Run: .venv/bin/python scripts/search_bench.py [MESSAGES]."""

import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from chatroom.server.message_ids import next_id
from chatroom.server.storage.sqlite_search import INDEX_HISTORY
from chatroom.server.storage.sqlite_store import SQLiteStore
from chatroom.testing.docs import write_generated

DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"

WORDS = [f"w{n}" for n in range(5000)]  # a vocabulary; w0 is common, the last ones are rare
PEOPLE = [f"user{n}" for n in range(200)]


def fill(store: SQLiteStore, messages: int) -> None:
    for name in PEOPLE:
        store.create_account(name, "x")

    def insert(db, rows):
        db.executemany("INSERT INTO history (id, first, second, sender, time_ms, text) VALUES (?, ?, ?, ?, ?, ?)", rows)
        db.execute(INDEX_HISTORY, (rows[0][0], rows[-1][0]))  # (the batch's ids, as the store's writer does)
        db.commit()

    rng = random.Random(1)
    batch = []
    for _ in range(messages):
        one, other = sorted(rng.sample(PEOPLE, 2))
        message_id, time_ms = next_id()
        words = [WORDS[min(int(rng.paretovariate(1.2)) - 1, len(WORDS) - 1)] for _ in range(8)]
        batch.append((message_id, one, other, rng.choice((one, other)), time_ms, " ".join(words)))
        if len(batch) == 20_000:
            store._worker.call(insert, batch)
            batch = []
    if batch:
        store._worker.call(insert, batch)


def timed(store, query, peer, runs=30) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        found = len(store.search(random.choice(PEOPLE), query, peer, [], 20, 0))
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, found


def main():
    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "search.db")
        store.start()
        started = time.perf_counter()
        fill(store, messages)
        seconds = time.perf_counter() - started
        lines = [
            f"Search (SQLite FTS5, `scripts/search_bench.py`): {messages} messages between {len(PEOPLE)} users, "
            f"stored and indexed in {seconds:.0f} s; medians of 30 searches of a random user's conversations, "
            "20 results wanted:",
            "",
        ]
        for label, query in [("a common word", "w0"), ("a rare word", "w4999"), ("two words", "w0 w1")]:
            median_ms, found = timed(store, query, None)
            lines.append(f"- {label} (`{query}`): {median_ms:.1f} ms, {found} found")
        store.stop()
    print("\n".join(lines))
    write_generated(DOC, "search_bench", lines)


if __name__ == "__main__":
    main()
