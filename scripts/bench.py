"""Measure chatroom-server against the asyncio baseline and write docs/performance.md.

Run through ./scripts/bench, which sets up the virtualenv. With ../shared/bench present it
builds the C load generator there (in a copy, under .bench/), runs its compare.py for the
relay configurations, measures both servers' memory holding 10,000 idle clients and checks
fan-in framing; without it, it runs chatroom-bench alone. The measured table replaces the part
of docs/performance.md between the GENERATED markers; the rest of the file is kept.
"""

import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chatroom.protocol import Authenticate, Hello, ListUsers, Register, Response, Status
from chatroom.testing import Peer, RedisProcess, ServerProcess, free_port, rss_kb
from chatroom.testing.docs import write_generated

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hold_bench  # noqa: E402 (scripts/, beside this one)
import irc_bench  # noqa: E402
import room_bench  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "bench"
BUILD = ROOT / ".bench"
DOC = ROOT / "docs" / "performance.md"
LOADGEN = ROOT / "scripts" / "loadgen" / "loadgen"
NGIRCD_CONF = LOADGEN.parent / "ngircd-bench.conf"
PYTHON = sys.executable
OURS = f"{Path(PYTHON).parent / 'chatroom-server'} --host 127.0.0.1 --log-level WARNING"
CONFIGS = os.environ.get("BENCH_CONFIGS", "2x1,100x16,1000x4")
ROUNDS = os.environ.get("BENCH_ROUNDS", "3")
HOLD_CLIENTS = int(os.environ.get("BENCH_HOLD_CLIENTS", "10000"))


def start_server(command: str) -> ServerProcess:
    return ServerProcess(command=command.split(), preexec_fn=_many_files, ready_timeout=30)


def _many_files():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def build_loadgen() -> Path:
    if BUILD.exists():
        shutil.rmtree(BUILD)
    shutil.copytree(SHARED, BUILD)
    subprocess.run(["make", "-s", "-C", str(BUILD)], check=True)
    return BUILD / "loadgen"


def own_loadgen() -> Path:
    """The C load generator of scripts/loadgen (with chatroom's room frames), built."""
    subprocess.run(["make", "-s", "-C", str(LOADGEN.parent)], check=True)
    return LOADGEN


def compare_servers(a: str, b: str, configs: str) -> str:
    """compare.py's table: server a against server b, alternating rounds, in one run."""
    result = subprocess.run(
        [PYTHON, str(BUILD / "compare.py"), "--a", a, "--b", b, "--rounds", ROUNDS, "--duration", "3"]
        + ["--configs", configs],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    print(result.stdout, flush=True)
    if result.returncode:
        print(result.stderr, file=sys.stderr)
    return result.stdout.strip("\n")


def compare() -> str:
    print(f"bench: relay {CONFIGS}, {ROUNDS} rounds each, ours (A) against asyncio (B)", flush=True)
    return compare_servers(OURS, f"{PYTHON} {BUILD / 'asyncio_server.py'}", CONFIGS)


def hold(command: str, loadgen: Path) -> tuple:
    """(RSS before clients, RSS with HOLD_CLIENTS idle logged-in clients), in KiB; the second
    7 s after they are all logged in (the server gives its heap's free pages back every 5 s:
    operations/memory.py)."""
    server = start_server(command)
    try:
        time.sleep(0.5)
        before = rss_kb(server.pid)
        gen = subprocess.Popen(
            [
                str(loadgen),
                "--port",
                str(server.port),
                "--scenario",
                "hold",
                "--clients",
                str(HOLD_CLIENTS),
                "--duration",
                "10",
            ],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=_many_files,
        )
        ready = gen.stdout.readline()
        if not ready.startswith("READY"):
            sys.exit(f"bench: hold against {command!r} did not get ready: {ready!r}")
        # Idle connections give up their greenlets after a quiet second, and the heap its free
        # pages within 5 s: measure after that.
        time.sleep(7)
        during = rss_kb(server.pid)
        gen.wait(60)
        return before, during
    finally:
        server.terminate()


def connect_and_login(command: str, loadgen: Path, rounds: int = 5) -> list[float]:
    """Seconds to connect and log in HOLD_CLIENTS clients (loadgen hold, 128 at once), once per
    round on one server, each round under names of its own; sorted."""
    server = start_server(command)
    times = []
    try:
        for round_number in range(rounds):
            out = subprocess.run(
                [str(loadgen), "--port", str(server.port), "--scenario", "hold", "--clients", str(HOLD_CLIENTS)]
                + ["--conc", "128", "--duration", "1", "--name-prefix", "login" + "abcdefghij"[round_number]],
                capture_output=True,
                text=True,
                timeout=120,
                preexec_fn=_many_files,
            ).stdout
            result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
            if result["logged_in"] != HOLD_CLIENTS:
                sys.exit(f"bench: {result['logged_in']} of {HOLD_CLIENTS} logged in to {command!r}")
            times.append(result["setup_s"])
            time.sleep(1)  # (the round's clients gone)
    finally:
        server.terminate()
    return sorted(times)


def fanin(loadgen: Path) -> dict:
    server = start_server(OURS)
    try:
        out = subprocess.run(
            [
                str(loadgen),
                "--port",
                str(server.port),
                "--scenario",
                "fanin",
                "--clients",
                "201",
                "--window",
                "4",
                "--duration",
                "3",
                "--verify",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    finally:
        server.terminate()
    return json.loads(next(line[7:] for line in out.splitlines() if line.startswith("RESULT ")))


def bench_alone() -> str:
    """Without the shared load generator: chatroom-bench against our server, relay configs."""
    print("bench: ../shared/bench is absent; running chatroom-bench alone (no baseline)", flush=True)
    rows = ["| config | msgs/s | p50 us | p99 us | lost/dup/reordered |", "|---|---|---|---|---|"]
    for config in CONFIGS.split(","):
        clients, window = config.split("x")
        server = start_server(OURS)
        try:
            out = subprocess.run(
                [
                    str(Path(PYTHON).parent / "chatroom-bench"),
                    "--port",
                    str(server.port),
                    "--clients",
                    clients,
                    "--window",
                    window,
                    "--duration",
                    "3",
                    "--verify",
                    "--json",
                ],
                capture_output=True,
                text=True,
                timeout=300,
            ).stdout
        finally:
            server.terminate()
        r = json.loads(out)
        rows.append(
            f"| {config} | {r['msgs_per_s']:.0f} | {r['p50_us']} | {r['p99_us']} | "
            f"{r['lost']}/{r['duplicated']}/{r['reordered']} |"
        )
        print(rows[-1], flush=True)
    return "\n".join(rows)


def chatroom_bench(port, clients, window, *extra) -> dict:
    out = subprocess.run(
        [str(Path(PYTHON).parent / "chatroom-bench"), "--port", str(port), "--clients", str(clients)]
        + ["--window", str(window), "--duration", "3", "--verify", "--json", *extra],
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    return json.loads(out)


def history_cost() -> list:
    """Relay between registered users, history on against off (chatroom-bench --register),
    alternating runs; the median of the per-round ratios."""
    rows = ["| config | history on msgs/s | history off msgs/s | on/off | lost (on/off) |", "|---|---|---|---|---|"]
    for clients, window in [(100, 16), (1000, 4)]:
        results: dict = {"on": [], "off": []}
        for _ in range(int(ROUNDS)):
            for label, extra in [("on", []), ("off", ["--no-history"])]:
                server = start_server(OURS + " " + " ".join(extra))
                try:
                    results[label].append(chatroom_bench(server.port, clients, window, "--register"))
                finally:
                    server.terminate()
        pairs = zip(results["on"], results["off"], strict=True)
        ratios = sorted(on["msgs_per_s"] / off["msgs_per_s"] for on, off in pairs)
        median = lambda runs: sorted(r["msgs_per_s"] for r in runs)[len(runs) // 2]  # noqa: E731
        lost = "/".join(str(sum(r["lost"] for r in results[label])) for label in ("on", "off"))
        rows.append(
            f"| {clients}x{window} | {median(results['on']):.0f} | {median(results['off']):.0f} | "
            f"{ratios[len(ratios) // 2]:.2f} | {lost} |"
        )
        print(rows[-1], flush=True)
    return rows


def websocket_cost() -> list:
    """Relay over WebSocket (the --web port) against plain TCP, on one server, chatroom-bench."""
    web_port = free_port()
    server = start_server(f"{OURS} --web 127.0.0.1:{web_port}")
    rows = ["| config | transport | msgs/s | p99 us | lost |", "|---|---|---|---|---|"]
    try:
        for clients, window in [(100, 16), (1000, 4)]:
            for transport, port, extra in [("tcp", server.port, []), ("websocket", web_port, ["--websocket"])]:
                result = chatroom_bench(port, clients, window, *extra)
                rows.append(
                    f"| {clients}x{window} | {transport} | {result['msgs_per_s']:.0f} | {result['p99_us']} | "
                    f"{result['lost']} |"
                )
                print(rows[-1], flush=True)
    finally:
        server.terminate()
    return rows


def password_latency() -> str:
    """Median and worst time of REGISTER and AUTHENTICATE (argon2id in the server's threads)
    against a LIST round trip: 30 of each, one at a time, each on a connection of its own."""
    server = start_server(OURS)
    times: dict = {"LIST": [], "REGISTER": [], "AUTHENTICATE": []}
    try:
        for i in range(30):
            for label, message in [
                ("LIST", ListUsers()),
                ("REGISTER", Register(f"user{i}", "a password")),
                ("AUTHENTICATE", Authenticate(f"user{i}", "a password")),
            ]:
                peer = Peer(server.address)
                try:
                    peer.request(Hello(1))
                    started = time.perf_counter()
                    reply = peer.request(message)
                    times[label].append(time.perf_counter() - started)
                finally:
                    peer.close()
                if label != "LIST" and reply != Response(Status.OK):
                    sys.exit(f"bench: {label} of user{i} answered {reply}")
    finally:
        server.terminate()
    parts = []
    for label, values in times.items():
        values.sort()
        parts.append(f"{label} {values[len(values) // 2] * 1000:.1f} ms (max {values[-1] * 1000:.1f})")
    return ", ".join(parts)


def machine() -> str:
    return f"{datetime.date.today()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"


def generated_section() -> list[str]:
    lines = [f"Measured by `./scripts/bench` on {machine()}.", ""]
    if not SHARED.exists():
        lines += ["chatroom-bench alone (relay, payload 64 B, 3 s):", "", bench_alone()]
        return lines + ["", *memory_section()]
    loadgen = build_loadgen()
    table = compare()
    ours_before, ours = hold(OURS, loadgen)
    base_before, base = hold(f"{PYTHON} {BUILD / 'asyncio_server.py'}", loadgen)
    print("bench: connect and log in, 10,000 clients", flush=True)
    logins = {
        "chatroom-server": connect_and_login(OURS, loadgen),
        "asyncio baseline": connect_and_login(f"{PYTHON} {BUILD / 'asyncio_server.py'}", loadgen),
    }
    print(logins, flush=True)
    fan = fanin(loadgen)
    print("bench: metrics served (--metrics) against not, 100x16 and 1000x4", flush=True)
    metrics = compare_servers(f"{OURS} --metrics 127.0.0.1:0", OURS, "100x16,1000x4")
    per_conn = lambda before, during: (during - before) * 1024 / HOLD_CLIENTS / 1024  # noqa: E731
    lines += [
        f"Relay (loadgen, payload 64 B, median of {ROUNDS} alternating runs of 3 s; A = chatroom-server, "
        "B = the asyncio-streams baseline; A/B is the median throughput ratio):",
        "",
        "```",
        table,
        "```",
        "",
        f"Hold, {HOLD_CLIENTS} idle logged-in clients (server RSS):",
        "",
        "| server | RSS idle | RSS with clients | KB per connection |",
        "|---|---|---|---|",
        f"| chatroom-server | {ours_before / 1024:.0f} MB | {ours / 1024:.0f} MB | {per_conn(ours_before, ours):.1f} |",
        f"| asyncio baseline | {base_before / 1024:.0f} MB | {base / 1024:.0f} MB | "
        f"{per_conn(base_before, base):.1f} |",
        "",
        f"Connect and log in, {HOLD_CLIENTS} clients (loadgen hold, 128 connecting at once), five rounds on one "
        "server (median; fastest and slowest in brackets):",
        "",
        "| server | seconds | connect-and-logins a second |",
        "|---|---|---|",
        *(
            f"| {server} | {times[2]:.3f} ({times[0]:.3f}–{times[-1]:.3f}) | {HOLD_CLIENTS / times[2]:.0f} "
            f"({HOLD_CLIENTS / times[-1]:.0f}–{HOLD_CLIENTS / times[0]:.0f}) |"
            for server, times in logins.items()
        ),
        "",
        f"Fan-in, 200 senders to one receiver, window 4: {fan['msgs_per_s']:.0f} msgs/s, p99 {fan['p99_us']} us, "
        f"{fan['framing_errors']} framing errors, {fan['violations']} violations, {fan['disconnects']} disconnects.",
        "",
        "Metrics: A = chatroom-server with `--metrics` (served, not scraped), B = without "
        f"(loadgen, median of {ROUNDS} alternating runs):",
        "",
        "```",
        metrics,
        "```",
    ]
    return lines + ["", *memory_section()]


def memory_section() -> list:
    print("bench: history on against off, registered users (chatroom-bench --register)", flush=True)
    history = history_cost()
    passwords = password_latency()
    print(passwords, flush=True)
    print("bench: WebSocket against TCP (chatroom-bench)", flush=True)
    web = websocket_cost()
    return [
        "WebSocket (the `--web` port, one frame per message) against plain TCP, on one server, "
        "chatroom-bench, 3 s each:",
        "",
        *web,
        "",
        f"History: relay between registered users (chatroom-bench --register, 3 s, median of {ROUNDS} alternating "
        "runs), the server keeping every message in SQLite against `--no-history`:",
        "",
        *history,
        "",
        f"Passwords (argon2id, 19 MiB, 2 passes, in the server's hashing threads), medians of 30: {passwords}.",
    ]


def rooms_section() -> list[str]:
    print("bench: rooms against ngircd's channels", flush=True)
    loadgen = own_loadgen()
    server = start_server(OURS)
    try:
        with room_bench.ngircd(NGIRCD_CONF) as theirs:
            measured = room_bench.loadgen_rooms(loadgen, (server.port, server.proc.pid), theirs)
    finally:
        server.terminate()
    print("bench: rooms across two nodes", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        redis = RedisProcess(folder)
        nodes = [start_server(f"{OURS} --redis {redis.url}") for _ in range(2)]
        try:
            ports = ",".join(str(node.port) for node in nodes)
            across = room_bench.loadgen_across(loadgen, ports, nodes[0].proc.pid)
        finally:
            for node in nodes:
                node.terminate()
            redis.close()
    return [
        f"Measured by `./scripts/bench rooms` on {machine()}.",
        "",
        *room_bench.section(measured),
        "",
        *room_bench.across_section(measured, across),
    ]


def irc_section() -> list[str]:
    print("bench: the IRC port against ngircd and against our own protocol", flush=True)
    loadgen = own_loadgen()
    irc_port = free_port()
    server = start_server(f"{OURS} --irc 127.0.0.1:{irc_port}")
    try:
        room_bench.wait_for_port(irc_port)
        with room_bench.ngircd(NGIRCD_CONF) as theirs:
            rows = irc_bench.measure(loadgen, irc_port, server.port, theirs)
    finally:
        server.terminate()
    return irc_bench.section(rows, machine())


def main():
    parts = {
        "main": ("bench", generated_section),
        "rooms": ("bench rooms", rooms_section),
        "irc": ("bench irc", irc_section),
        "hold": ("bench hold", lambda: hold_bench.section(own_loadgen())),
    }
    asked = sys.argv[1:]
    for name, (marker, make) in parts.items():
        if not asked or name in asked:
            write_generated(DOC, marker, make())
    print(f"bench: wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
