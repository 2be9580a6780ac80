"""Many rows of one INSERT statement as few statements of many rows each.

The history's rows, many of one statement, go to SQLite as few INSERTs of many rows each (up
to ROWS_PER_INSERT in one VALUES list): executemany would take and give back the interpreter's
lock twice a row, and with the hub busy each taking waits for the hub's next system call.
Under load that convoy made the thread eight times slower (and the hub slower too) than one
statement per batch. (A JSON array read by json_each, one statement a batch, cost 1.6 times as
much a row as these: SQLite parsed each row's JSON again for every column.)
"""

import functools
import re
import sqlite3

ROWS_PER_INSERT = 128  # rows in one INSERT at most: six columns' 768 parameters, under the 999 of any SQLite
_PARAMETER_LIMIT = 999
_VALUES = re.compile(r"VALUES (\(\?(?:, \?)*\))$")


def insert_rows(db: sqlite3.Connection, sql: str, rows: list) -> None:
    """The rows of sql (an INSERT ... VALUES (?, ...)), many to a statement: each statement
    takes the most rows that are left, in a power of two up to what its parameters allow
    (a few statements' sizes, each prepared once and kept by the connection's cache)."""
    most = _most_rows(sql)
    start = 0
    while start < len(rows):
        count = most
        while count > len(rows) - start:
            count //= 2
        db.execute(_with_rows(sql, count), [value for row in rows[start : start + count] for value in row])
        start += count


@functools.cache
def _most_rows(sql: str) -> int:
    """The most rows (a power of two) one INSERT of sql carries."""
    columns = _values_of(sql).count("?")
    most = ROWS_PER_INSERT
    while most > 1 and most * columns > _PARAMETER_LIMIT:
        most //= 2
    return most


@functools.cache
def _with_rows(sql: str, count: int) -> str:
    """INSERT ... VALUES (?, ?) as INSERT ... VALUES (?, ?), (?, ?), ... for count rows."""
    row = _values_of(sql)
    return sql[: -len(row)] + ", ".join([row] * count)


@functools.cache
def statement_shapes(sql: str) -> tuple[str, ...]:
    """sql for 1, 2, 4 ... rows, up to the most one INSERT of it carries (_batch_writer.c
    prepares each once)."""
    return tuple(_with_rows(sql, 1 << power) for power in range(_most_rows(sql).bit_length()))


def _values_of(sql: str) -> str:
    match = _VALUES.search(sql)
    assert match is not None, sql
    return match.group(1)
