"""The IRC port for docs/performance.md: relay and room fan-out through chatroom-server's IRC
port against Debian's ngircd, and against chatroom's own protocol, all on the C load generator
of scripts/loadgen, in one run. Called by scripts/bench.py (``./scripts/bench irc`` runs this part alone).

Each shape runs ROUNDS times, the servers taking turns (ours over IRC, ours over its own
protocol, ngircd), and the medians are compared: this machine is shared and noisy, so only
ratios within one run mean something.
"""

import os
import time
from pathlib import Path

from room_bench import SHAPES, deliveries, loadgen_run, room_options

RELAYS = [(100, 16), (1000, 4)]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
TAGS = "server-time message-tags account-tag"


def _shapes() -> list[tuple[str, str, int, list[str]]]:
    """(label, scenario, clients, loadgen options) of each shape measured."""
    shapes = [(f"relay {c}x{w}", "relay", c, ["--window", str(w)]) for c, w in RELAYS]
    for clients, size, senders in SHAPES:
        label = f"{clients // size} room(s) of {size}, {senders} sending"
        shapes.append((label, "room", clients, room_options(size, senders)))
    # As WeeChat and irssi connect: taking tags on every line (our protocol has none to take;
    # ngircd takes what it has of them).
    tags = ["--irc-caps", TAGS]
    shapes.append(("relay 100x16, tags", "relay", 100, ["--window", "16", *tags]))
    shapes.append(("1 room(s) of 100, 10 sending, tags", "room", 100, [*room_options(100, 10), *tags]))
    return shapes


def _rate(result: dict) -> float | None:
    """Messages delivered per second (a room: every member's copy but the sender's)."""
    if result.get("room"):
        return deliveries(result)
    if not result or result.get("violations") or result.get("disconnects"):
        return None
    return result.get("msgs_per_s")


def _median(values: list) -> float | None:
    values = sorted(value for value in values if value is not None)
    return values[len(values) // 2] if values else None


def measure(loadgen: Path, ours_irc: int, ours_native: int | None, theirs: int | None) -> list[dict]:
    """Each shape ROUNDS times, the servers taking turns: the median rates."""
    rows = []
    for label, scenario, clients, options in _shapes():
        runs: dict = {"irc": [], "native": [], "ngircd": []}
        for _ in range(ROUNDS):
            runs["irc"].append(_rate(loadgen_run(loadgen, ours_irc, "irc", scenario, clients, *options)))
            if ours_native is not None:
                # (names of their own: the IRC run's users may still be leaving the same server)
                native = loadgen_run(loadgen, ours_native, "chat", scenario, clients, *options, "--name-prefix", "n")
                runs["native"].append(_rate(native))
            if theirs is not None:
                runs["ngircd"].append(_rate(loadgen_run(loadgen, theirs, "irc", scenario, clients, *options)))
            time.sleep(0.5)  # (the names of the last run's clients are free again)
        rows.append({"shape": label, **{server: _median(rates) for server, rates in runs.items()}})
        print(rows[-1], flush=True)
    return rows


def section(rows: list[dict], machine: str) -> list[str]:
    def figure(value):
        return f"{value:.0f}" if value else "–"

    def ratio(a, b):
        return f"{a / b:.2f}" if a and b else "–"

    table = [
        "| shape | IRC port msgs/s | own protocol msgs/s | ngircd msgs/s | IRC port / ngircd | IRC port / own |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        irc, native, theirs = row["irc"], row["native"], row["ngircd"]
        table.append(
            f"| {row['shape']} | {figure(irc)} | {figure(native)} | {figure(theirs)} | {ratio(irc, theirs)} | "
            f"{ratio(irc, native)} |"
        )
    return [
        f"Measured by `./scripts/bench irc` on {machine}.",
        "",
        f"The IRC port (chatroom-server `--irc`) against Debian's ngircd, and against chatroom's own protocol, on "
        f"scripts/loadgen (`--proto irc`, or `chat` for our protocol; `--verify`, 3 s, median of {ROUNDS} runs "
        "taking turns). Rooms: deliveries per second, every member's copy but the sender's. A run with a violation "
        f"or a disconnect counts for nothing (–). The shapes marked tags: the IRC clients take `{TAGS}` "
        "(`--irc-caps`), as WeeChat and irssi do; our protocol's are the same as without.",
        "",
        *table,
    ]
