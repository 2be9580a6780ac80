"""Room fan-out for docs/performance.md: chatroom-server's rooms (chatroom-bench's room
scenario) against ngircd's channels (the shared loadgen, --proto irc --scenario room), the same
shapes in one run. Called by scripts/bench.py (``./scripts/bench rooms`` runs this part alone).

The shapes: rooms of 10 where everyone sends, rooms of 100 with 10 senders, one room of 1000
with 5 senders. A room's message reaches every member in chatroom (the sender's own copy is how
it learns the room's order) and every member but the sender in IRC: deliveries are counted as
each server makes them.
"""

import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SHAPES = [(100, 10, 10), (100, 100, 10), (1000, 1000, 5)]  # clients, room size, senders per room
WINDOW = 4


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def chatroom_rooms(bench_command: list[str], port, server_pid: int) -> list[dict]:
    """chatroom-bench's runs, each with the CPU the server (server_pid) and the bench used
    (1.0: a core); ``port``: one, or several ("P1,P2": member i on the (i mod n)th)."""
    results = []
    for clients, size, senders in SHAPES:
        started, server_before = time.monotonic(), _cpu_seconds(server_pid)
        bench_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = subprocess.run(
            [*bench_command, "--port", str(port), "--scenario", "room", "--clients", str(clients)]
            + ["--room-size", str(size), "--senders", str(senders), "--window", str(WINDOW)]
            + ["--duration", "3", "--verify", "--json", "--prefix", f"r{clients}x{size}"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if not run.stdout.strip():
            # (A shape the server could not set up, a login refused: said in the table.)
            lines = run.stderr.strip().splitlines() or ["no output"]
            results.append({"error": lines[-1].removeprefix("chatroom-bench: ")})
            continue
        out = run.stdout
        elapsed = time.monotonic() - started
        bench_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = json.loads(out)
        result["server_cpu"] = (_cpu_seconds(server_pid) - server_before) / elapsed
        result["bench_cpu"] = (
            bench_after.ru_utime + bench_after.ru_stime - bench_before.ru_utime - bench_before.ru_stime
        ) / elapsed
        results.append(result)
    return results


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


def ngircd_rooms(loadgen: Path, config: Path) -> list[dict] | None:
    """loadgen's room scenario against Debian's ngircd, or None without ngircd."""
    with ngircd(config) as port:
        if port is None:
            return None
        results = []
        for clients, size, senders in SHAPES:
            run = subprocess.run(
                [str(loadgen), "--proto", "irc", "--port", str(port), "--scenario", "room"]
                + ["--clients", str(clients), "--members", str(size), "--senders", str(senders)]
                + ["--window", str(WINDOW), "--duration", "3", "--verify", "--setup-timeout", "120"],
                capture_output=True,
                text=True,
                timeout=600,
            )
            line = next((line for line in run.stdout.splitlines() if line.startswith("RESULT ")), None)
            results.append(json.loads(line[len("RESULT ") :]) if line else {})
        return results


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)


def section(ours: list[dict], theirs: list[dict] | None) -> list[str]:
    rows = [
        "| shape | chatroom deliveries/s | messages/s | p99 | misordered, lost, dropped | CPU server, bench | "
        "ngircd deliveries/s | chatroom/ngircd |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for index, (clients, size, senders) in enumerate(SHAPES):
        result = ours[index]
        if "error" in result:
            rows.append(
                f"| {clients // size} room(s) of {size}, {senders} sending | not measured: {result['error']} |||||||"
            )
            continue
        other = (theirs[index].get("room") or {}) if theirs else {}
        other_rate = other.get("deliveries_per_s")
        ratio = f"{result['msgs_per_s'] / other_rate:.2f}" if other_rate else "–"
        measured = f"{other_rate:.0f}" if other_rate else "not measured"
        rows.append(
            f"| {clients // size} room(s) of {size}, {senders} sending | {result['msgs_per_s']:.0f} | "
            f"{result['messages_per_s']:.0f} | {result['p99_us'] / 1000:.1f} ms | "
            f"{result['misordered']}, {result['lost']}, {result['disconnects']} | "
            f"{result['server_cpu']:.2f}, {result['bench_cpu']:.2f} | "
            f"{measured} | {ratio} |"
        )
    return [
        f"Rooms (one server; chatroom-bench's room scenario, window {WINDOW}, 3 s, against ngircd's channels "
        "under the shared loadgen's `--proto irc --scenario room`; deliveries as each server makes them):",
        "",
        *rows,
        "",
        "Dropped: members the server disconnected as stalled (a room's message found their queue full); what "
        "they would have received counts as lost. CPU is the share of one core over each run (set-up included). "
        "chatroom-bench is Python: where its CPU nears 1.0 it, not the server, sets the rate, and the chatroom "
        "figures are a floor; a C load generator of the room frames (the performance issue) is what can show the "
        "server's own limit.",
    ]


def across_section(results: list[dict]) -> list[str]:
    rows = [
        "| shape | deliveries/s | messages/s | p99 | misordered, lost, dropped | CPU node 1, bench |",
        "|---|---|---|---|---|---|",
    ]
    for (clients, size, senders), result in zip(SHAPES, results, strict=True):
        if "error" in result:
            rows.append(
                f"| {clients // size} room(s) of {size}, {senders} sending | not measured: {result['error']} |||||"
            )
            continue
        rows.append(
            f"| {clients // size} room(s) of {size}, {senders} sending | {result['msgs_per_s']:.0f} | "
            f"{result['messages_per_s']:.0f} | {result['p99_us'] / 1000:.1f} ms | "
            f"{result['misordered']}, {result['lost']}, {result['disconnects']} | "
            f"{result['server_cpu']:.2f}, {result['bench_cpu']:.2f} |"
        )
    return [
        "The same across two nodes on one Redis (members alternate between the nodes; each message is "
        "published once per node, in one order):",
        "",
        *rows,
    ]
