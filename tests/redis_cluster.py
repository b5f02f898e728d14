"""A real Valkey cluster of local server processes, for tests of the cluster code paths."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import TracebackType

from redis import Redis
from redis.crc import key_slot
from redis.exceptions import RedisError, ResponseError

from chat.embedded_redis import die_with_parent, find_server_binary, free_port, stop_process

SLOTS = 16384


class ClusterError(RuntimeError):
    pass


class ClusterNode:
    """One cluster-enabled server process; `node_id` is set once it answers."""

    def __init__(self, data_dir: Path, port: int, bus_port: int) -> None:
        self.port = port
        self.bus_port = bus_port
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.node_id = ""
        self.paused = False

    def __repr__(self) -> str:
        return f"<ClusterNode {self.port} {self.node_id[:8]}>"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def live(self) -> bool:
        """Running and not paused: it can answer."""
        return self.running and not self.paused

    def client(self, timeout: float = 5.0) -> Redis:
        """A new sync client to this node (the caller closes it)."""
        return Redis(
            host="127.0.0.1",
            port=self.port,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )

    def role(self) -> str:
        """ "master" or "slave", as the node itself says."""
        with self.client() as client:
            return str(client.execute_command("ROLE")[0])

    def launch(self, cluster_options: list[str]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            find_server_binary(),
            "--port",
            str(self.port),
            # Explicit, since port + 10000 (the default) may be taken or above 65535.
            "--cluster-port",
            str(self.bus_port),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            f"nodes-{self.port}.conf",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "no",
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.log_path),
            *cluster_options,
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def answers(self) -> bool:
        """Whether it pings; raises ClusterError if the process has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise ClusterError(
                f"node {self.port} exited with {self.process.returncode}; see {self.log_path}"
            )
        try:
            with self.client(timeout=0.5) as client:
                return bool(client.ping())
        except RedisError:  # not listening yet, or still loading
            return False

    def log_says(self, text: str) -> bool:
        try:
            return text in self.log_path.read_text(errors="replace")
        except OSError:
            return False


class RedisClusterServers:
    """`primaries` primaries with `replicas` (0 or 1) replicas each, on 127.0.0.1."""

    def __init__(
        self,
        data_dir: Path,
        primaries: int = 3,
        replicas: int = 0,
        node_timeout_ms: int = 2000,
    ) -> None:
        if primaries < 1 or replicas not in (0, 1):
            raise ValueError("need at least one primary and 0 or 1 replica per primary")
        self.data_dir = data_dir
        self.primary_count = primaries
        self.replica_count = replicas
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[ClusterNode] = []
        self._ports: set[int] = set()
        self._started_primaries: list[ClusterNode] = []

    @property
    def url(self) -> str:
        """The primaries as started, for chat.redis_target."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self._started_primaries)
        return f"redis+cluster://{hosts}"

    def __enter__(self) -> RedisClusterServers:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # Start

    def start(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        try:
            self._launch_all(deadline)
            self._form_cluster(deadline)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _options(self) -> list[str]:
        return [
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            "--cluster-require-full-coverage",
            "yes",
            "--cluster-allow-reads-when-down",
            "no",
            # A test's topology stays as it made it: no replica moves to an orphaned primary,
            # and a primary left without slots does not turn itself into a replica.
            "--cluster-allow-replica-migration",
            "no",
            # A replica may always be promoted, however long its primary has been gone.
            "--cluster-replica-validity-factor",
            "0",
            # The default waits 5 s for more replicas before a full sync.
            "--repl-diskless-sync-delay",
            "0",
            # SIGTERM would otherwise wait up to 10 s for lagging replicas.
            "--shutdown-timeout",
            "0",
        ]

    def _free_port(self) -> int:
        while True:
            port = free_port()
            if port not in self._ports:
                self._ports.add(port)
                return port

    def _new_node(self) -> ClusterNode:
        port = self._free_port()
        return ClusterNode(self.data_dir / str(port), port, self._free_port())

    def _launch_all(self, deadline: float) -> None:
        count = self.primary_count * (1 + self.replica_count)
        self.nodes = [self._new_node() for _ in range(count)]
        for node in self.nodes:
            node.launch(self._options())
        for index, node in enumerate(self.nodes):
            for attempt in range(3):
                try:
                    _until(
                        deadline, node.answers, f"node {node.port} to answer; see {node.log_path}"
                    )
                    break
                except ClusterError:
                    # Another process took a port free_port gave us: try two new ones.
                    if attempt == 2 or not node.log_says("Address already in use"):
                        raise
                    node = self.nodes[index] = self._new_node()
                    node.launch(self._options())
            with node.client() as client:
                node.node_id = str(client.execute_command("CLUSTER", "MYID"))
        self._started_primaries = self.nodes[: self.primary_count]

    def _form_cluster(self, deadline: float) -> None:
        primaries = self._started_primaries
        first = primaries[0]
        for index, node in enumerate(self.nodes):
            with node.client() as client:
                # Distinct epochs up front, so no collision has to be resolved by gossip.
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
        for index, node in enumerate(primaries):
            start = index * SLOTS // len(primaries)
            end = (index + 1) * SLOTS // len(primaries) - 1
            with node.client() as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", start, end)
        with first.client() as client:
            for node in self.nodes[1:]:
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
        _until(deadline, self._all_know_each_other, "every node to know every other")
        replicas = self.nodes[len(primaries) :]
        for primary, replica in zip(primaries, replicas, strict=False):
            _until(
                deadline,
                partial(_replicate, replica, primary),
                f"node {replica.port} to accept CLUSTER REPLICATE; see {replica.log_path}",
            )
        for replica in replicas:
            _until(
                deadline,
                partial(_link_up, replica),
                f"replica {replica.port} to sync; see {replica.log_path}",
            )
        _until(deadline, self._ok_problem, "cluster_state:ok")

    def _all_know_each_other(self) -> str | None:
        for node in self.nodes:
            entries = _cluster_nodes(node)
            known = {e.node_id for e in entries if not e.flags & {"handshake", "noaddr", "fail"}}
            if len(known) != len(self.nodes):
                return (
                    f"node {node.port} knows {len(known)} of {len(self.nodes)}; see {node.log_path}"
                )
        return None

    # Topology, as the cluster sees it

    def _by_id(self, node_id: str) -> ClusterNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise ClusterError(f"no node of ours has id {node_id}")

    def _witness(self) -> ClusterNode:
        for node in self.nodes:
            if node.live:
                return node
        raise ClusterError("no node is running")

    def primaries(self) -> list[ClusterNode]:
        """Primaries not marked failed, as the first live node sees them, in start order."""
        entries = _cluster_nodes(self._witness())
        ids = {e.node_id for e in entries if "master" in e.flags and "fail" not in e.flags}
        return [node for node in self.nodes if node.node_id in ids]

    def replica_of(self, primary: ClusterNode) -> ClusterNode | None:
        """A replica of `primary` not marked failed, as the first live node sees it."""
        for entry in _cluster_nodes(self._witness()):
            if entry.master_id == primary.node_id and "fail" not in entry.flags:
                return self._by_id(entry.node_id)
        return None

    def owner_of_slot(self, slot: int, seen_from: ClusterNode | None = None) -> ClusterNode:
        """The primary serving `slot` according to `seen_from` (default: the first live node)."""
        node = seen_from or self._witness()
        with node.client() as client:
            ranges = client.execute_command("CLUSTER", "SLOTS")
        for start, end, primary, *_replicas in ranges:
            if start <= slot <= end:
                return self._by_id(str(primary[2]))
        raise ClusterError(f"slot {slot} is not served, says node {node.port}")

    @staticmethod
    def slot_of(key: str) -> int:
        """The hash slot of `key` ({hash tags} honoured)."""
        return int(key_slot(key.encode()))

    # Changes

    def move_slot(self, slot: int, to: ClusterNode, timeout: float = 20) -> int:
        """Live resharding of one slot to the primary `to`; the number of keys moved.

        Returns once every live node names `to` as the slot's owner.
        """
        deadline = time.monotonic() + timeout
        source = self.owner_of_slot(slot, seen_from=to)
        if source is to:
            return 0
        moved = 0
        with source.client(timeout=10) as from_client, to.client() as to_client:
            to_client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
            from_client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", to.node_id)
            while True:
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"slot {slot} still has keys on {source.port} after {timeout} s"
                    )
                keys = from_client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
                if not keys:
                    break
                # The writes of clients meanwhile go to the source for keys still there and,
                # by ASK, to the target for the others, so a key is never in both.
                reply = from_client.execute_command(
                    "MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS", *keys
                )
                if reply == "OK":
                    moved += len(keys)
            # The target first: it bumps its epoch and so wins any disagreement in gossip.
            to_client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", to.node_id)
            from_client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", to.node_id)
        for node in self.primaries():
            if node not in (source, to) and node.live:
                with node.client() as client:
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", to.node_id)

        def agreed() -> str | None:
            for node in self.nodes:
                if node.live and self.owner_of_slot(slot, seen_from=node) is not to:
                    return f"node {node.port} does not yet see {to.port} as the owner"
            return None

        _until(deadline, agreed, f"every node to see slot {slot} on {to.port}")
        return moved

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL; the node stays in `nodes`, dead."""
        if node.process is not None and node.process.poll() is None:
            node.process.kill()
            node.process.wait()
        node.paused = False

    def pause(self, node: ClusterNode) -> None:
        """SIGSTOP: the node hangs, its sockets stay open."""
        if node.process is not None and node.process.poll() is None:
            os.kill(node.process.pid, signal.SIGSTOP)
            node.paused = True

    def resume(self, node: ClusterNode) -> None:
        if node.process is not None and node.process.poll() is None:
            os.kill(node.process.pid, signal.SIGCONT)
        node.paused = False

    def failover(self, replica: ClusterNode, timeout: float = 15, force: bool = False) -> None:
        """CLUSTER FAILOVER on `replica` (FORCE: without its primary's agreement).

        Returns once it is a primary, its old primary (if live) a replica, and the cluster ok.
        """
        deadline = time.monotonic() + timeout
        myself = next(e for e in _cluster_nodes(replica) if "myself" in e.flags)
        if myself.master_id is None:
            raise ClusterError(f"node {replica.port} is not a replica")
        old = self._by_id(myself.master_id)
        with replica.client() as client:
            client.execute_command("CLUSTER", "FAILOVER", *(["FORCE"] if force else []))

        def swapped() -> str | None:
            if replica.role() != "master":
                return f"{replica.port} is still a replica"
            if old.live and old.role() != "slave":
                return f"{old.port} is still a primary"
            return None

        _until(deadline, swapped, f"replica {replica.port} to take over; see {replica.log_path}")
        self.wait_until_ok(max(deadline - time.monotonic(), 0.1))

    def wait_until_ok(self, timeout: float = 20) -> None:
        """Every live node says cluster_state:ok and sees every slot on a live primary.

        The live nodes must also agree on which primary serves each slot.
        """
        _until(time.monotonic() + timeout, self._ok_problem, "the cluster to be ok")

    def _ok_problem(self) -> str | None:
        live = {node.node_id for node in self.nodes if node.live}
        maps: dict[int, list[tuple[int, int, str]]] = {}
        for node in self.nodes:
            if not node.live:
                continue
            with node.client() as client:
                info = str(client.execute_command("CLUSTER", "INFO"))
                ranges = client.execute_command("CLUSTER", "SLOTS")
            if "cluster_state:ok" not in info:
                return f"node {node.port} says cluster_state:fail; see {node.log_path}"
            maps[node.port] = sorted(
                (start, end, str(primary[2])) for start, end, primary, *_ in ranges
            )
            covered = sum(end - start + 1 for start, end, owner in maps[node.port] if owner in live)
            if covered != SLOTS:
                return (
                    f"node {node.port} sees {SLOTS - covered} slots without a live primary; "
                    f"see {node.log_path}"
                )
        if len({tuple(slot_map) for slot_map in maps.values()}) > 1:
            return "the live nodes do not agree yet on who serves which slots"
        return None

    def stop(self) -> None:
        """Stop every process; safe to call twice."""
        running = [node.process for node in self.nodes if node.process is not None]
        for node in self.nodes:
            if node.paused:
                self.resume(node)  # a stopped process would not act on SIGTERM
        for process in running:
            if process.poll() is None:
                process.terminate()
        for process in running:
            stop_process(process, 2)


class _Entry:
    """One line of CLUSTER NODES."""

    def __init__(self, line: str) -> None:
        fields = line.split()
        self.node_id = fields[0]
        self.flags = set(fields[2].split(","))
        self.master_id = fields[3] if fields[3] != "-" else None


def _cluster_nodes(node: ClusterNode) -> list[_Entry]:
    with node.client() as client:
        text = str(client.execute_command("CLUSTER", "NODES"))
    return [_Entry(line) for line in text.splitlines() if line.strip()]


def _replicate(replica: ClusterNode, primary: ClusterNode) -> str | None:
    try:
        with replica.client() as client:
            client.execute_command("CLUSTER", "REPLICATE", primary.node_id)
    except ResponseError as error:  # "Unknown node" until gossip has reached it
        return str(error)
    return None


def _link_up(replica: ClusterNode) -> str | None:
    with replica.client() as client:
        status = client.info("replication").get("master_link_status")
    return None if status == "up" else f"master_link_status:{status}"


def _until(
    deadline: float, check: Callable[[], str | bool | None], what: str, pause: float = 0.05
) -> None:
    """Poll `check` until it returns True or None (a string says what is still wrong)."""
    problem: str | bool | None = False
    while True:
        try:
            problem = check()
        except (RedisError, OSError) as error:
            problem = f"{type(error).__name__}: {error}"
        if problem is True or problem is None:
            return
        if time.monotonic() > deadline:
            detail = f" ({problem})" if isinstance(problem, str) else ""
            raise ClusterError(f"timed out waiting for {what}{detail}")
        time.sleep(pause)
