"""Gives the heap memory that connections freed back to the system, now and then; and sets
the garbage collector for a server that holds many connections.

glibc's malloc keeps what is freed for reuse, and returns to the system only what lies at the
top of its heap. A burst of logins leaves the heap mostly free (transient buffers, greenlet
stacks saved while they waited) but pinned by the few long-lived objects made meanwhile, and
every page of it stays in the server's RSS: 10,000 idle connections took 7.2 KB each, 3.9 KB
after ``malloc_trim(0)``, which hands the free pages back. It takes a few milliseconds on a
heap that a burst left free, and next to nothing otherwise. Without glibc (musl, macOS)
nothing is done.

The collector: every object the server made at start (modules, the confusables table, the
accounts) lives as long as the process, yet each full collection went through them all again,
and a young collection ran every 700 allocations, a few per login: during a burst of logins
the collector took a sixth of the server's CPU (perf). Once started, the server freezes what
it holds (``gc.freeze``: left out of every later collection) and collects far less often. That
is safe because a connection that ends leaves no cycle behind (its session, rules and outbox
are freed as the server lets go of them, see Rules.closed and Outbox.close), so nothing waits
for the collector: 59-66 -> 44-45 µs of CPU per connect-and-login, and 10,000 logins and
logouts six times over leave the server at 70-76 MB, where it was 77.

Frame stacks: every greenlet that runs Python gets frame stacks of its own, in chunks Python
maps afresh and unmaps again (two system calls and four page faults a greenlet; a login
spawns one). Where _frame_stacks.c was built, they come from malloc's heap instead.
"""

import ctypes
import ctypes.util
import gc

import gevent

TRIM_EVERY = 5.0  # seconds
# Allocations between young collections, and young (then middle) collections between the
# next generation's (CPython's defaults: 700, 10, 10).
COLLECTOR_THRESHOLDS = (10_000, 50, 100)


def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def keep_trimmed(every: float = TRIM_EVERY) -> gevent.Greenlet | None:
    """A greenlet that trims the heap every ``every`` seconds (kill it to stop); None where
    malloc_trim is not there."""
    trim = _malloc_trim()
    if trim is None:
        return None

    def trimming():
        while True:
            gevent.sleep(every)
            trim(0)

    return gevent.spawn(trimming)


def frame_stacks_from_the_heap() -> bool:
    """Greenlets' frame stacks from malloc from now on (see _frame_stacks.c); False where it
    was not built (Python maps them, as without this)."""
    try:
        from . import _frame_stacks
    except ImportError:
        return False
    _frame_stacks.install()
    return True


def settle_collector() -> None:
    """Once the server has started (in its process's entry point: it is the whole process's
    setting): what it holds now is kept out of later collections, and young collections are
    rarer."""
    gc.collect()  # (cyclic garbage frozen would never be freed)
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
