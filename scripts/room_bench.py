"""Room fan-out for docs/performance.md: chatroom-server's rooms against ngircd's channels,
the same shapes in one run, both under the C load generator of scripts/loadgen (the shared one
with chatroom's room frames added: `--proto chat --scenario room`), the servers taking turns.
Across two nodes of a cluster, chatroom-bench's room scenario (it spreads members over the
nodes). Called by scripts/bench.py (``./scripts/bench rooms`` runs this part alone).

The shapes: rooms of 10 where everyone sends, rooms of 100 with 10 senders, one room of 1000
with 5 senders. A room's message reaches every member in chatroom (the sender's own copy is how
it learns the room's order) and every member but the sender in IRC; the loadgen counts the
other members' copies in both (chatroom's echo apart), chatroom-bench every copy.
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
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def loadgen_run(loadgen: Path, port: int, proto: str, scenario: str, clients: int, *extra: str) -> dict:
    """One run of the load generator; its RESULT (empty if it gave none)."""
    run = subprocess.run(
        [str(loadgen), "--proto", proto, "--port", str(port), "--scenario", scenario, "--clients", str(clients)]
        + ["--duration", "3", "--verify", "--setup-timeout", "120", *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )
    line = next((line for line in run.stdout.splitlines() if line.startswith("RESULT ")), None)
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
