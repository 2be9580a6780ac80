"""Throwaway redis-server processes on loopback, alone or formed into a Redis Cluster."""

import itertools
import os
import shutil
import signal

from gevent import socket, subprocess

from .waiting import WAIT, eventually, free_port


def redis_server_binary() -> str:
    """Debian's redis-server (7 or newer: cluster mode needs sharded pub/sub)."""
    found = shutil.which("redis-server")
    if not found:
        raise FileNotFoundError("no redis-server: install Debian's redis-server package (./scripts/test does)")
    return found


class RedisProcess:
    """redis-server on 127.0.0.1 and a free port, in ``folder``, without persistence (unless
    ``persistent``: an append-only file, kept across a restart); with ``cluster``, a node of a
    Redis Cluster (see RedisClusterProcess).

    Raises FileNotFoundError when there is no redis-server to run.
    """

    def __init__(self, folder, cluster: bool = False, persistent: bool = False):
        self.folder = str(folder)
        os.makedirs(self.folder, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.options = ["--save", "", "--appendonly", "yes" if persistent else "no", "--dir", self.folder]
        if cluster:
            self.bus_port = free_port()
            self.options += ["--cluster-enabled", "yes", "--cluster-port", str(self.bus_port)]
            # (A master waits 5 s by default before it sends its data to a new replica, for
            # others to come too: a test's replica needs it at once.)
            self.options += ["--repl-diskless-sync-delay", "0"]
        self.start()

    def start(self, timeout: float = 10.0) -> None:
        """Start (again, after stop(): empty, as a restarted Redis without persistence; a
        cluster node keeps its place in the cluster, which it saves apart from the data)."""
        command = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", *self.options]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers():
            assert self.proc.poll() is None, "redis-server exited early"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return False
            return True

        eventually(answers, timeout=timeout, interval=0.05)

    def client(self):
        """A redis-py client of this server."""
        import redis

        return redis.Redis(port=self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(WAIT)

    close = stop


class RedisClusterProcess:
    """A Redis Cluster of three masters (no replicas) on loopback, without persistence.

    ``url`` is the address of a master that does *not* serve the chat directory's slot, so
    that a node must find the one that does. ``stop``, ``start``, ``proc`` and ``client``
    act on that directory master (whose loss is what the nodes notice), as they would on a
    single RedisProcess; ``close`` stops them all.
    """

    SLOT_COUNT = 16384

    def __init__(self, folder, masters: int = 3, timeout: float = 30.0):
        from redis.cluster import key_slot

        from ..server.presence.cluster.scripts import USERS  # a key in the slot of the whole directory

        self.masters = []
        self.replicas: list[RedisProcess] = []
        for index in range(masters):
            self.masters.append(RedisProcess(os.path.join(folder, f"master{index}"), cluster=True))
        clients = [master.client() for master in self.masters]
        bounds = [index * self.SLOT_COUNT // masters for index in range(masters + 1)]
        slot_ranges = [(first, after - 1) for first, after in itertools.pairwise(bounds)]
        for client, (first, last) in zip(clients, slot_ranges, strict=True):
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for master in self.masters[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", master.port, master.bus_port)
        for client in clients:
            client.close()
        self.wait_until_formed(timeout)
        directory_slot = key_slot(USERS.encode())
        owner = next(i for i, (first, last) in enumerate(slot_ranges) if first <= directory_slot <= last)
        self.directory_master = self.masters[owner]
        self.url = self.masters[(owner + 1) % masters].url

    def wait_until_formed(self, timeout: float = 30.0) -> None:
        """Wait until every master sees them all and every slot served.

        The bound is generous because Redis itself holds a master back: two seconds after it
        starts (its writable delay), and up to five more once it has seen itself in a
        minority while the gossip spreads (its rejoin delay); on a loaded machine that has
        gone past ten seconds.
        """
        states: dict[int, tuple[str, int]] = {}

        def formed():
            for master in self.masters:
                with master.client() as client:
                    info = client.cluster("info")
                states[master.port] = (info["cluster_state"], int(info["cluster_known_nodes"]))
            return all(state == ("ok", len(self.masters)) for state in states.values())

        try:
            eventually(formed, timeout=timeout, interval=0.05)
        except AssertionError:
            raise AssertionError(f"the cluster never formed; (state, known nodes) by port: {states}") from None

    def reset(self) -> None:
        """Empty every master (restarting any that is down), as a fresh cluster would be."""
        for master in self.masters:
            if master.proc.poll() is not None:
                master.start()
            master.proc.send_signal(signal.SIGCONT)  # in case a test left it paused
            with master.client() as client:
                client.flushall()
        self.wait_until_formed()

    def add_replica(self, folder, timeout: float = 10.0) -> RedisProcess:
        """Start a replica of the directory's master and wait until it has the data."""
        replica = RedisProcess(folder, cluster=True)
        with self.directory_master.client() as master:
            master.execute_command("CLUSTER", "MEET", "127.0.0.1", replica.port, replica.bus_port)
            master_id = master.execute_command("CLUSTER", "MYID")
        with replica.client() as client:
            eventually(lambda: len(client.execute_command("CLUSTER", "NODES").splitlines()) > len(self.masters))
            client.execute_command("CLUSTER", "REPLICATE", master_id)
            eventually(lambda: client.info("replication").get("master_link_status") == "up", timeout=timeout)
            replica_id = client.execute_command("CLUSTER", "MYID")
        with self.directory_master.client() as master:
            # A master ignores a manual failover asked by a node it does not yet know as its
            # replica (the cluster bus tells it, apart from the replication link).
            eventually(
                lambda: _lists_node(master.execute_command("CLUSTER", "REPLICAS", master_id), replica_id),
                timeout=timeout,
            )
        self.replicas.append(replica)
        return replica

    @staticmethod
    def promote(replica: RedisProcess, attempts: int = 3) -> None:
        """Fail the directory's master over to ``replica`` (CLUSTER FAILOVER) and wait until the
        replica is the master. A manual failover that does not finish within Redis's own bound
        (five seconds) is dropped by Redis, so it is asked again, a bounded number of times."""
        with replica.client() as client:
            for _ in range(attempts):
                client.execute_command("CLUSTER", "FAILOVER")
                try:
                    eventually(lambda: client.info("replication")["role"] == "master", timeout=WAIT + 1)
                    return
                except AssertionError:
                    continue
        raise AssertionError(f"the replica on port {replica.port} never took over")

    @property
    def proc(self):
        return self.directory_master.proc

    def start(self, timeout: float = 10.0) -> None:
        self.directory_master.start(timeout)

    def stop(self) -> None:
        self.directory_master.stop()

    def client(self):
        return self.directory_master.client()

    def close(self) -> None:
        for server in self.masters + self.replicas:
            server.stop()


def _lists_node(cluster_nodes_lines, node_id: bytes) -> bool:
    """Whether lines in CLUSTER NODES' format name the node ``node_id``."""
    return any(line.split()[0] == node_id for line in cluster_nodes_lines)
