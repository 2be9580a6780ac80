"""Cluster figures: same-node against cross-node messages, and --reuse-port against one process.

Run through ./scripts/cluster-bench. It starts its own Redis (Debian's redis-server: one, then
a Redis Cluster of three masters) and chatroom-server nodes on 127.0.0.1, measures with
chatroom-bench (and with ../shared/bench's loadgen for the --reuse-port comparison when it is
there), prints the figures and writes them into docs/cluster.md between the GENERATED markers.
"""

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chatroom.testing import RedisClusterProcess, RedisProcess, ServerProcess, free_port
from chatroom.testing.docs import write_generated

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOC = ROOT / "docs" / "cluster.md"
SHARED = ROOT.parent / "shared" / "bench"
BUILD = ROOT / ".bench"
DURATION = os.environ.get("BENCH_DURATION", "3")


def start_node(*args) -> ServerProcess:
    return ServerProcess("--log-level", "WARNING", *args)


def run_load(tool, port, clients, window, *extra) -> str:
    """Run a load generator (chatroom-bench or loadgen) with --verify; its standard output."""
    command = [str(tool), "--port", str(port), "--clients", str(clients), "--window", str(window)]
    command += ["--duration", DURATION, "--verify", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=300).stdout


def bench(ports, clients, window, *extra) -> dict:
    out = run_load(BIN / "chatroom-bench", ",".join(map(str, ports)), clients, window, "--json", *extra)
    return json.loads(out)


def loadgen(port, clients, window) -> dict:
    out = run_load(BUILD / "loadgen", port, clients, window, "--warmup", "1")
    return json.loads(next(line[7:] for line in out.splitlines() if line.startswith("RESULT ")))


def row(label, result) -> str:
    checks = "/".join(str(result.get(k, 0)) for k in ("lost", "duplicated", "reordered"))
    if "violations" in result:
        checks = f"{result['violations']} violations"
    return f"| {label} | {result['msgs_per_s']:.0f} | {result['p99_us']} | {checks} |"


def redis_publish_rate(port: int) -> str:
    """One Redis core's raw SPUBLISH rate (redis-benchmark, Debian's redis-tools), beside ours."""
    tool = shutil.which("redis-benchmark")
    if tool is None:
        return "redis-benchmark not installed (Debian: redis-tools)"
    rates = []
    for size in (100, 2000):
        out = subprocess.run(
            [
                tool,
                "-p",
                str(port),
                "-n",
                "300000",
                "-c",
                "20",
                "-P",
                "16",
                "-q",
                "SPUBLISH",
                "chatroom:bench",
                "x" * size,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        found = re.search(r"([\d.]+) requests per second", out)
        rates.append(f"{size} B: {float(found.group(1)):,.0f}/s" if found else f"{size} B: ?")
    return "redis-benchmark SPUBLISH to a channel nobody reads, pipeline 16: " + "; ".join(rates)


def cross_node(redis_url, label, runs) -> list:
    """Rows for relays between users of two nodes: runs are (clients, window, registered)."""
    lines = []
    one, two = start_node("--redis", redis_url), start_node("--redis", redis_url)
    try:
        for number, (clients, window, registered) in enumerate(runs):
            extra = ["--register", "--prefix", f"r{number}x"] if registered else []
            result = bench([one.port, two.port], clients, window, *extra)
            kind = "registered users (history kept)" if registered else "relay"
            lines.append(row(f"cross-node, {label}, {kind} {clients}x{window}", result))
            print(lines[-1], flush=True)
    finally:
        one.terminate()
        two.terminate()
    return lines


def measure(redis_url) -> list:
    lines = ["| run | msgs/s | p99 us | lost/dup/reordered |", "|---|---|---|---|"]
    one, two = start_node("--redis", redis_url), start_node("--redis", redis_url)
    port_one, port_two = one.port, two.port
    try:
        for clients, window in [(2, 1), (100, 16), (1000, 4)]:
            lines.append(row(f"same node, relay {clients}x{window}", bench([port_one], clients, window)))
            print(lines[-1], flush=True)
            cross = bench([port_one, port_two], clients, window)
            lines.append(row(f"cross-node, one Redis, relay {clients}x{window}", cross))
            print(lines[-1], flush=True)
    finally:
        one.terminate()
        two.terminate()

    use_loadgen = SHARED.exists()
    if use_loadgen and not (BUILD / "loadgen").exists():
        shutil.copytree(SHARED, BUILD, dirs_exist_ok=True)
        subprocess.run(["make", "-s", "-C", str(BUILD)], check=True)
    measure_port = loadgen if use_loadgen else (lambda port, c, w: bench([port], c, w))
    tool = "loadgen" if use_loadgen else "chatroom-bench"
    single = start_node("--redis", redis_url)
    try:
        lines.append(row(f"1 process, relay 1000x4 ({tool})", measure_port(single.port, 1000, 4)))
        print(lines[-1], flush=True)
    finally:
        single.terminate()
    port = free_port()
    pair = [start_node("--redis", redis_url, "--reuse-port", "--port", str(port)) for _ in range(2)]
    try:
        lines.append(row(f"2 processes, --reuse-port, relay 1000x4 ({tool})", measure_port(port, 1000, 4)))
        print(lines[-1], flush=True)
    finally:
        for node in pair:
            node.terminate()
    return lines


def failover_under_load(folder) -> str:
    """Cross-node relay while the directory's master hands over to its replica (CLUSTER
    FAILOVER, a third of the way in): how many sends failed, and whether any was lost."""
    cluster = RedisClusterProcess(Path(folder) / "failover")
    replica = cluster.add_replica(Path(folder) / "failover-replica")
    one, two = start_node("--redis", cluster.url), start_node("--redis", cluster.url)
    try:
        command = [str(BIN / "chatroom-bench"), "--port", f"{one.port},{two.port}", "--clients", "100"]
        command += ["--window", "16", "--duration", DURATION, "--warmup", "1", "--verify", "--json"]
        load = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(1 + float(DURATION) / 3)
        with replica.client() as client:
            client.execute_command("CLUSTER", "FAILOVER")
        result = json.loads(load.communicate(timeout=300)[0])
    finally:
        one.terminate()
        two.terminate()
        cluster.close()
    checks = "/".join(str(result[k]) for k in ("lost", "duplicated", "reordered"))
    return (
        f"Failover under load (cross-node relay 100x16 on a Redis Cluster of 3, the directory's master handing "
        f"over to its replica a third of the way in): {result['msgs_per_s']:.0f} msgs/s, {result['failures']} "
        f"sends answered FAILURE, lost/dup/reordered {checks}."
    )


def main():
    folder = tempfile.mkdtemp(prefix="chatroom-redis-")
    registered = (100, 16, True)
    redis_server = RedisProcess(folder)
    try:
        lines = measure(redis_server.url)  # with the relays across one Redis
        lines += cross_node(redis_server.url, "one Redis", [registered])
        rate = redis_publish_rate(redis_server.port) + "."
    finally:
        redis_server.stop()
    redis_cluster = RedisClusterProcess(Path(folder) / "cluster")
    try:
        lines += cross_node(redis_cluster.url, "Redis Cluster of 3", [(100, 16, False), (1000, 4, False), registered])
    finally:
        redis_cluster.close()
    try:
        failover = failover_under_load(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    lines += ["", rate, "", failover]
    print(rate, failover, sep="\n", flush=True)
    measured = (
        f"Measured by `./scripts/cluster-bench` on {datetime.date.today()}, "
        f"{os.cpu_count()} cores, {DURATION} s per run (load generator on the same cores)."
    )
    write_generated(DOC, "cluster-bench", [measured, "", *lines])
    print(f"cluster-bench: wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
