"""Room fan-out for docs/performance.md: chatroom-server's rooms against ngircd's channels,
the same shapes in one run, both under the C load generator of scripts/loadgen (the shared one
with chatroom's room frames added: `--proto chat --scenario room`), the servers taking turns.
Across two nodes of a cluster, the same load generator and shapes (`--port P1,P2`: a room's
members alternate between the nodes). Called by scripts/bench.py (``./scripts/bench rooms``
runs this part alone).

The shapes: rooms of 10 where everyone sends, rooms of 100 with 10 senders, one room of 1000
with 5 senders. A room's message reaches every member in chatroom (the sender's own copy is how
it learns the room's order) and every member but the sender in IRC; the loadgen counts the
other members' copies in both (chatroom's echo apart).
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SHAPES = [(100, 10, 10), (100, 100, 10), (1000, 1000, 5)]  # clients, room size, senders per room
WINDOW = 4
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def loadgen_run(loadgen: Path, port: int | str, proto: str, scenario: str, clients: int, *extra: str) -> dict:
    """One run of the load generator; its RESULT (empty if it gave none)."""
    run = subprocess.run(
        [str(loadgen), "--proto", proto, "--port", str(port), "--scenario", scenario, "--clients", str(clients)]
        + ["--duration", "3", "--verify", "--setup-timeout", "120", *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return loadgen_result(run.stdout)


def loadgen_result(output: str) -> dict:
    """The RESULT a run of the load generator printed (empty if it gave none)."""
    line = next((line for line in output.splitlines() if line.startswith("RESULT ")), None)
    return json.loads(line[len("RESULT ") :]) if line else {}


def room_options(size: int, senders: int) -> list[str]:
    return ["--members", str(size), "--senders", str(senders), "--window", str(WINDOW)]


def deliveries(result: dict) -> float | None:
    """Every member's copies per second in a clean run (None: a violation, a disconnect, no run)."""
    if not result or result.get("violations") or result.get("disconnects"):
        return None
    return (result.get("room") or {}).get("deliveries_per_s")


def median_run(runs: list[dict]) -> dict:
    """The clean run of median deliveries (empty if none was clean)."""
    clean = sorted((run for run in runs if deliveries(run)), key=lambda run: deliveries(run) or 0.0)
    return clean[len(clean) // 2] if clean else {}


def loadgen_rooms(loadgen: Path, ours: tuple[int, int], theirs: int | None) -> list[tuple[dict, dict]]:
    """Each shape ROUNDS times, chatroom (ours: its port and pid) and ngircd (its port, if any)
    taking turns: (chatroom's median run, ngircd's) per shape."""
    port, pid = ours
    medians = []
    for clients, size, senders in SHAPES:
        runs: dict = {"ours": [], "ngircd": []}
        for _ in range(ROUNDS):
            options = room_options(size, senders)
            runs["ours"].append(loadgen_run(loadgen, port, "chat", "room", clients, *options, "--server-pid", str(pid)))
            if theirs is not None:
                runs["ngircd"].append(loadgen_run(loadgen, theirs, "irc", "room", clients, *options))
            time.sleep(0.5)  # (the names of the last run's clients are free again)
        medians.append((median_run(runs["ours"]), median_run(runs["ngircd"])))
        print(clients, size, senders, [deliveries(run) for run in medians[-1]], flush=True)
    return medians


def loadgen_across(loadgen: Path, ports: str, node_pid: int) -> list[dict]:
    """Each shape ROUNDS times across a cluster's nodes (ports "P1,P2": member i at the
    (i mod n)th, so a room's members alternate); the median run per shape (node_pid: the
    first node, whose CPU the run reports)."""
    medians = []
    for clients, size, senders in SHAPES:
        runs = []
        for _ in range(ROUNDS):
            options = room_options(size, senders)
            runs.append(loadgen_run(loadgen, ports, "chat", "room", clients, *options, "--server-pid", str(node_pid)))
            time.sleep(0.5)  # (the names of the last run's clients are free again)
        medians.append(median_run(runs))
        print(clients, size, senders, deliveries(medians[-1]), flush=True)
    return medians


NGIRCD_PORT = 16667  # (ngircd-bench.conf's)


@contextlib.contextmanager
def ngircd(config: Path):
    """Debian's ngircd on NGIRCD_PORT for the block (None without ngircd)."""
    binary = shutil.which("ngircd") or ("/usr/sbin/ngircd" if Path("/usr/sbin/ngircd").exists() else None)
    if binary is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as folder:
        conf = Path(folder) / "ngircd.conf"
        conf.write_text(config.read_text())
        server = subprocess.Popen([binary, "-n", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(NGIRCD_PORT)
            yield NGIRCD_PORT
        finally:
            server.terminate()
            server.wait(10)


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)


def section(measured: list[tuple[dict, dict]]) -> list[str]:
    rows = [
        "| shape | chatroom deliveries/s | messages/s | p99 | server CPU | ngircd deliveries/s | chatroom/ngircd |",
        "|---|---|---|---|---|---|---|",
    ]
    for (clients, size, senders), (ours, theirs) in zip(SHAPES, measured, strict=True):
        shape = f"{clients // size} room(s) of {size}, {senders} sending"
        rate, other = deliveries(ours), deliveries(theirs)
        if not rate:
            rows.append(f"| {shape} | no clean run |||||{other or 0:.0f} | – |")
            continue
        cpu = (ours.get("server") or {}).get("cpu_pct", 0) / 100
        rows.append(
            f"| {shape} | {rate:.0f} | {ours['msgs_per_s']:.0f} | {ours['p99_us'] / 1000:.1f} ms | {cpu:.2f} | "
            f"{f'{other:.0f}' if other else 'not measured'} | {f'{rate / other:.2f}' if other else '–'} |"
        )
    return [
        f"Rooms (one server; scripts/loadgen `--scenario room`, window {WINDOW}, `--verify`, 3 s, median of {ROUNDS} "
        "runs, chatroom (`--proto chat`) and ngircd's channels (`--proto irc`) taking turns). Deliveries: the "
        "other members' copies, in both (chatroom also hands the sender its own copy, not counted); messages/s and "
        "p99 at each sender's witness (the next member, whose copy frees the sender's slot); server CPU: the share "
        "of one core. A run with a violation (a copy lost, duplicated or out of order) or a disconnect counts for "
        "nothing.",
        "",
        *rows,
    ]


def across_section(measured: list[tuple[dict, dict]], across: list[dict]) -> list[str]:
    """The shapes across two nodes, beside the one server's figures of the same run."""
    rows = [
        "| shape | deliveries/s | messages/s | p99 | node 1 CPU | against one server |",
        "|---|---|---|---|---|---|",
    ]
    for (clients, size, senders), (alone, _), result in zip(SHAPES, measured, across, strict=True):
        shape = f"{clients // size} room(s) of {size}, {senders} sending"
        rate, one = deliveries(result), deliveries(alone)
        if not rate:
            rows.append(f"| {shape} | no clean run ||||| ")
            continue
        cpu = (result.get("server") or {}).get("cpu_pct", 0) / 100
        rows.append(
            f"| {shape} | {rate:.0f} | {result['msgs_per_s']:.0f} | {result['p99_us'] / 1000:.1f} ms | {cpu:.2f} | "
            f"{f'{rate / one:.2f}' if one else '–'} |"
        )
    return [
        "The same across two nodes on one Redis, the same load generator (a room's members alternate between the "
        "nodes; each message is published once per node, in one order; the same counting, verification and "
        "medians):",
        "",
        *rows,
    ]
