"""100,000 held connections on one port, for docs/performance.md (`./scripts/bench hold`).

One process may not open more than 20,000 files on this machine (a hard limit that not even
root may raise), so one server process cannot hold 100,000 connections here. What can be
measured: a group of processes behind one port (`--reuse-port`, joined through one Redis, as
docs/cluster.md runs them), each holding a sixth, with scripts/loadgen's hold scenario from
several source addresses (`--bind-ips`, a generator per 17,000 clients, each under the same
limit: the server and loadgen each raise their soft limit to it); meanwhile a fresh pair
relays and its latency is read, while the kernel's keepalive probes go round (past every
connection's first minute of silence), and at the end every generator says how many of its
connections are still there.

The kernel's keepalive timers fire in groups (its timer wheel rounds a minute to 2 s at 250
Hz), so the probes for a whole second's logins go out at once: thousands, on loopback both a
probe and its answer through one CPU's queue of waiting packets, which drops what comes past
``net.core.netdev_max_backlog`` (1,000 by default). Probes lost three times over end their
connection, unseen by the other end. The run raises that setting to BACKLOG while it lasts (as
deploy/sysctl.d/ does for a server), where it may.
"""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from room_bench import loadgen_result, loadgen_run

from chatroom.testing import RedisProcess, ServerProcess, free_port, rss_kb

CLIENTS = int(os.environ.get("BENCH_HOLD_MANY", "102000"))
NODES = 6
PER_GENERATOR = 17000  # (and its own 20,000 files at most)
SETTLE = 7.0  # seconds for idle connections to park and the heap to give its free pages back
BACKLOG = 65536  # net.core.netdev_max_backlog for the run (see above)
PROBED = 65.0  # seconds from the first login: the first connections' keepalive probes have begun
HELD_FOR = 120  # seconds from the last login to the count of the connections left: past 60 s of
# silence and three lost probes 10 s apart (the server's keepalive)
BACKLOG_SETTING = Path("/proc/sys/net/core/netdev_max_backlog")


def measure(loadgen: Path) -> dict:
    """Hold CLIENTS connections over NODES processes on one port: the figures."""
    redis_process = RedisProcess(Path(tempfile.mkdtemp(prefix="hold-redis-")))
    port = free_port()
    nodes: list[ServerProcess] = []
    generators: list[subprocess.Popen] = []
    backlog_before = _set_backlog(BACKLOG)
    try:
        options = ["--port", str(port), "--reuse-port", "--redis", redis_process.url, "--log-level", "WARNING"]
        options += ["--max-clients", str(CLIENTS // NODES + 2000)]
        nodes = [ServerProcess(*options, ready_timeout=60) for _ in range(NODES)]
        time.sleep(SETTLE)
        before = sum(rss_kb(node.pid) for node in nodes)
        started = time.monotonic()
        count = -(-CLIENTS // PER_GENERATOR)
        for number in range(count):
            clients = min(PER_GENERATOR, CLIENTS - number * PER_GENERATOR)
            sources = f"127.0.0.{2 + 2 * number},127.0.0.{3 + 2 * number}"  # (28,000 ports each)
            generators.append(
                subprocess.Popen(
                    [str(loadgen), "--port", str(port), "--scenario", "hold", "--clients", str(clients)]
                    + ["--duration", str(HELD_FOR), "--setup-timeout", "240", "--name-prefix", f"h{chr(97 + number)}"]
                    + ["--bind-ips", sources],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        ready = [generator.stdout.readline() for generator in generators]
        logged_in = sum(int(line.split()[1]) for line in ready if line.startswith("READY"))
        seconds = time.monotonic() - started
        time.sleep(SETTLE)
        during = sum(rss_kb(node.pid) for node in nodes)
        redis_kb = rss_kb(redis_process.proc.pid)
        # (Three pairs one after another: each pair's two users land on one process or two,
        # as the kernel deals the connections; across two, a message goes through Redis.)
        time.sleep(max(0.0, started + PROBED - time.monotonic()))
        pairs = [_fresh_pair(loadgen, port, f"fresh{letter}") for letter in "abc"]
        held = sum(_alive_at_the_end(generator) for generator in generators)
        return {
            "logged_in": logged_in,
            "logins_per_s": logged_in / seconds,
            "kb_each": (during - before) / max(1, logged_in),
            "before_mb": before / 1024,
            "during_mb": during / 1024,
            "redis_mb": redis_kb / 1024,
            "fresh_p50_us": [pair.get("p50_us") for pair in pairs],
            "fresh_p99_us": [pair.get("p99_us") for pair in pairs],
            "fresh_max_us": max(pair.get("max_us", 0) for pair in pairs),
            "fresh_clean": all(pair and not (pair.get("violations") or pair.get("disconnects")) for pair in pairs),
            "held": held,
            "backlog": int(BACKLOG_SETTING.read_text()),
        }
    finally:
        if backlog_before is not None:
            _set_backlog(backlog_before)
        for generator in generators:
            generator.kill()
            generator.wait()
        for node in nodes:
            node.stop()
        redis_process.close()
        shutil.rmtree(redis_process.folder, ignore_errors=True)


def _set_backlog(value: int) -> int | None:
    """Set net.core.netdev_max_backlog (for the run: see above); what it was, or None where it
    may not be changed (the run then says what it was)."""
    try:
        before = int(BACKLOG_SETTING.read_text())
        BACKLOG_SETTING.write_text(str(value))
    except OSError:
        return None
    return before


def _alive_at_the_end(generator: subprocess.Popen) -> int:
    """How many of a hold generator's connections lasted its whole hold (its RESULT)."""
    return loadgen_result(generator.communicate(timeout=HELD_FOR + 60)[0]).get("alive_end", 0)


def _fresh_pair(loadgen: Path, port: int, prefix: str) -> dict:
    """A pair that logs in while the rest are held and relays for 3 s: loadgen's RESULT."""
    return loadgen_run(loadgen, port, "chat", "relay", 2, "--name-prefix", prefix, "--bind-ips", "127.0.0.40")


def section(loadgen: Path) -> list[str]:
    figures = measure(loadgen)
    print(figures, flush=True)
    pairs = zip(figures["fresh_p50_us"], figures["fresh_p99_us"], strict=True)
    return [
        f"Held at once on one port by {NODES} processes (`--reuse-port`, one Redis; scripts/loadgen hold from "
        f"source addresses 127.0.0.2 on, {PER_GENERATOR} clients a generator; RSS {SETTLE:g} s after the last "
        f"logged in, less the idle processes'; the fresh pairs {PROBED:g} s after the first login, among the "
        f"keepalive probes; still held: {HELD_FOR} s after the last login; net.core.netdev_max_backlog "
        f"{figures['backlog']}):",
        "",
        "| clients logged in | still held | logins a second | KB per connection | RSS idle, held (MB) "
        "| Redis RSS (MB) | a fresh pair meanwhile: p50 and p99 (µs); the most |",
        "|---|---|---|---|---|---|---|",
        f"| {figures['logged_in']} | {figures['held']} | {figures['logins_per_s']:.0f} | {figures['kb_each']:.2f} "
        f"| {figures['before_mb']:.0f}, {figures['during_mb']:.0f} | {figures['redis_mb']:.0f} "
        f"| {', '.join(f'{p50} and {p99}' for p50, p99 in pairs)} "
        f"(three pairs); {figures['fresh_max_us']} µs"
        f"{'' if figures['fresh_clean'] else ' (not clean)'} |",
    ]
