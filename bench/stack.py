"""The system under test: valkey, an aiosmtpd that captures codes, hypercorn; /proc readers."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import resource
import secrets
import time
import urllib.request
from pathlib import Path
from typing import Any

from redis import Redis

from chat.embedded_redis import EmbeddedRedis
from tests.servers import AppServer, descendants_of
from tests.support import GENEROUS_LIMITS, SmtpServer

ROOT = Path(__file__).resolve().parent.parent
CODE_IN_SUBJECT = re.compile(r"^(\d{8}) ")  # first in the subject, in every language
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def raise_nofile() -> int:
    """Raise this process's (and so its children's) open-file limit to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class CodeInbox:
    """aiosmtpd handler: keeps the newest sign-in code per recipient."""

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        match = CODE_IN_SUBJECT.match(str(message["Subject"]))
        if match:
            self.codes[str(message["To"]).strip().lower()] = match.group(1)
        return "250 OK"

    async def wait_for_code(self, address: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.codes.pop(address, None)
            if code:
                return code
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no code mailed to {address} within {timeout} s")


class Smtp(SmtpServer):
    def __init__(self) -> None:
        super().__init__(handler=CodeInbox())


def proc_stat(pid: int) -> tuple[float, int] | None:
    """(CPU seconds user+system, RSS bytes) of one process, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return cpu, int(fields[21]) * PAGE_SIZE


class Server(AppServer):
    """The production entry under hypercorn (tests/servers.py), plus /proc accounting."""

    def __init__(self, settings: dict[str, Any], workers: int, log_path: Path) -> None:
        super().__init__(settings, workers=workers, log_path=log_path)

    def start(self, timeout: float = 30) -> None:
        super().start(timeout)

    def is_ready(self) -> bool:
        """Ready for load: pub/sub round trip works and every worker is up."""
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response:
                return response.status == 200 and len(self.worker_pids()) >= self.workers
        except OSError:
            return False

    def pids(self) -> list[int]:
        if self.process is None:
            return []
        return [self.process.pid, *descendants_of(self.process.pid)]

    def worker_pids(self) -> list[int]:
        """The processes that serve sockets: children running the app (not the resource tracker)."""
        found = []
        for pid in self.pids()[1:]:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"resource_tracker" not in cmd:
                found.append(pid)
        return found

    def usage(self) -> dict[str, Any]:
        """CPU seconds and RSS of the master and each worker."""
        per = {}
        for pid in self.pids():
            stat = proc_stat(pid)
            if stat:
                per[pid] = {"cpu": stat[0], "rss": stat[1]}
        return {"total_cpu": sum(p["cpu"] for p in per.values()), "processes": per}

    def stop(self, timeout: float = 15) -> int | None:
        family = self.pids()
        code = super().stop(timeout)
        for pid in family[1:]:  # leftovers, by id
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        return code


class Valkey:
    def __init__(self, data_dir: Path) -> None:
        # AOF on (everysec), as the embedded server and a typical production Redis run it.
        self.server = EmbeddedRedis(data_dir, appendonly=True)
        self.client: Redis | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()
        self.client = Redis(port=self.server.port, decode_responses=True)

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    def cpu(self) -> float:
        assert self.client is not None
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def commandstats(self) -> dict[str, int]:
        assert self.client is not None
        stats = self.client.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    def reset_stats(self) -> None:
        assert self.client is not None
        self.client.config_resetstat()

    def rss(self) -> int:
        stat = proc_stat(self.pid)
        return stat[1] if stat else 0

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.server.stop()


class ValkeyCluster:
    """Valkey as a cluster of `primaries` primaries (no replicas), all on this machine: the
    same interface as Valkey, with the figures summed over the nodes (and per node)."""

    def __init__(self, data_dir: Path, primaries: int = 3) -> None:
        from tests.redis_cluster import RedisClusterServers

        self.servers = RedisClusterServers(data_dir, primaries=primaries)
        self.client: Any = None

    @property
    def url(self) -> str:
        return self.servers.url

    def start(self) -> None:
        from redis.cluster import RedisCluster

        self.servers.start()
        port = self.servers.nodes[0].port
        self.client = RedisCluster(host="127.0.0.1", port=port, decode_responses=True)

    def _each(self, call: Any) -> dict[int, Any]:
        found = {}
        for node in self.servers.nodes:
            with node.client() as client:
                found[node.port] = call(client)
        return found

    def node_cpu(self) -> dict[int, float]:
        return self._each(
            lambda c: float(c.info("cpu")["used_cpu_user"]) + float(c.info("cpu")["used_cpu_sys"])
        )

    def cpu(self) -> float:
        return sum(self.node_cpu().values())

    def commandstats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for stats in self._each(lambda c: c.info("commandstats")).values():
            for k, v in stats.items():
                name = k.removeprefix("cmdstat_")
                total[name] = total.get(name, 0) + int(v["calls"])
        return total

    def reset_stats(self) -> None:
        self._each(lambda c: c.config_resetstat())

    def rss(self) -> int:
        return sum(
            (proc_stat(node.process.pid) or (0.0, 0))[1]
            for node in self.servers.nodes
            if node.process is not None
        )

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.servers.stop()


def server_settings(redis_url: str, smtp_url: str, **overrides: Any) -> dict[str, Any]:
    """Limits raised through CHAT_* settings only: the app is otherwise as shipped."""
    return {
        "REDIS_URL": redis_url,
        "SMTP_URL": smtp_url,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "COOKIE_SECURE": "false",
        **GENEROUS_LIMITS,
        "CODE_SENDS_PER_IP_PER_HOUR": 1_000_000,
        "CODE_CHECKS_PER_IP_PER_HOUR": 1_000_000,
        "CODE_CHECKS_PER_MINUTE": 1_000_000,
        "WS_MESSAGES_PER_SECOND": 100_000,
        "WS_BURST": 100_000,
        "WS_MAX_SOCKETS_PER_SESSION": 1000,
        "WS_HANDSHAKES_PER_MINUTE": 1_000_000,  # each load-generator session opens many sockets
        "HISTORY_MAXLEN": 1_000_000,  # keep every message, so the bench can count what was stored
        "HISTORY_KEEP": 1_000_000,  # also once archived (each server archives to a temp file)
        "MENTION_EMAIL_DELAY_SECONDS": 600,  # as shipped (the tests' limits turn it off)
        **overrides,
    }
