"""The Redis connection (a real server, a Redis Cluster, or an embedded in-process store)
and the naming of every key the gateway writes.

Every per-key name carries the `{key_id}` hash tag, so one API key's state lives in one
Redis Cluster slot and one Lua script can touch all of it.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from importlib import resources

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

log = logging.getLogger("distillguard.store")

SCRIPT_NAMES = ("admit", "window_admit", "settle", "renew", "checkpoint", "lease_take", "lease_release",
                "signature_save", "linkage_publish", "clusters_replace", "events_append")
# Connections per Redis node and process: bursts queue for one (bounded by the Redis
# timeout) rather than open thousands of sockets.
MAX_CONNECTIONS = 256


def decision_key(key_id: str) -> str:
    return f"dg:{{{key_id}}}:decision"


@dataclass(frozen=True, slots=True)
class KeyNames:
    """The Redis names holding one API key's rate-limit state."""

    decision: str
    requests: str
    tokens: str
    token_amounts: str
    leases: str

    @classmethod
    def for_key(cls, key_id: str) -> "KeyNames":
        tag = f"dg:{{{key_id}}}"
        return cls(decision_key(key_id), f"{tag}:req", f"{tag}:tok", f"{tag}:tokamt", f"{tag}:lease")

    @property
    def admit_keys(self) -> list[str]:
        return [self.decision, self.requests, self.tokens, self.token_amounts, self.leases]

    @property
    def settle_keys(self) -> list[str]:
        return [self.requests, self.tokens, self.token_amounts, self.leases]


def ip_log_key(ip_id: str) -> str:
    return f"dg:{{ip:{ip_id}}}:req"


# Detection. Each event stream carries its own hash tag, so a Redis Cluster spreads the
# shards over its masters; a key's scorer state, flag and recent events share its slot.
EVENT_GROUP = "scorers"
SCORER_REGISTRY = "dg:scorers"
FLAG_INDEX = "dg:flags"


def event_stream(shard: int) -> str:
    return f"dg:{{events:{shard}}}"


def shard_lease_key(shard: int) -> str:
    return f"dg:{{events:{shard}}}:lease"


def event_producer_key(shard: int, producer: str) -> str:
    """A gateway process's last batch number appended to a shard (events_append.lua)."""
    return f"dg:{{events:{shard}}}:producer:{producer}"


def key_state_key(key_id: str) -> str:
    return f"dg:{{{key_id}}}:state"


def recent_events_key(key_id: str) -> str:
    return f"dg:{{{key_id}}}:events"


def flag_key(key_id: str) -> str:
    return f"dg:{{{key_id}}}:flag"


def activity_key(key_id: str, hour: int) -> str:
    """One hour of a key's per-minute request and token counts (`hour`: Unix hours)."""
    return f"dg:{{{key_id}}}:activity:{hour}"


def prompt_samples_key(key_id: str) -> str:
    return f"dg:{{{key_id}}}:prompts"


# Linkage (service/scoring/linkage.py describes the layout). A key's signature and cluster
# live in its own slot; the active sets are spread over LINK_SHARDS slots by crc32.
LINK_SHARDS = 16
CLUSTER_INDEX = "dg:{clusters}"
PASS_LEASE = "dg:{linkage}:lease"
PASS_DONE = "dg:{linkage}:done"
PASS_LOG = "dg:{linkage}:passes"


def signature_key(key_id: str) -> str:
    return f"dg:{{{key_id}}}:link"


def key_cluster_key(key_id: str) -> str:
    return f"dg:{{{key_id}}}:cluster"


def active_key(shard: int) -> str:
    return f"dg:{{link:{shard}}}:active"


def link_shard(key_id: str) -> int:
    return zlib.crc32(key_id.encode()) % LINK_SHARDS


def cluster_key(cluster_id: str) -> str:
    return f"dg:{{{cluster_id}}}:cluster"


def publish_cursor_key(stream_shard: int) -> str:
    """The last pass slot whose verdicts stream shard `stream_shard` received."""
    return f"{event_stream(stream_shard)}:linkage"


def cluster_alerted_key(cluster_id: str) -> str:
    """Set when a cluster's first flag was alerted, so a cluster alerts once, not per member."""
    return f"dg:{{cluster:{cluster_id}}}:alerted"


# The review console. The audit trail is one stream (time-ordered, trimmed by age); a
# target's audit index lives in the target's own slot.
AUDIT_STREAM = "dg:audit"


def audit_target_key(target: str) -> str:
    """Ids of the audit entries about one target (a key_id or a cluster id), newest first."""
    return f"dg:{{{target}}}:audit"


def session_key(session_hash: str) -> str:
    """A console session, named by the SHA-256 of its cookie (the cookie itself is never stored)."""
    return f"dg:session:{session_hash}"


def sign_in_failures_key(client_ip: str) -> str:
    return f"dg:signin:{client_ip}"


# Reviewer verdicts (service/decisions.py). A key's label, review status and dismissal live in
# its own slot; the index of labelled keys is one sorted set, like the flag index.
LABEL_INDEX = "dg:labels"


def label_key(key_id: str) -> str:
    return f"dg:{{{key_id}}}:label"


def review_key(key_id: str) -> str:
    return f"dg:{{{key_id}}}:review"


def dismissed_key(key_id: str) -> str:
    """Present while automatic actions leave a dismissed key alone (expires with the quiet period)."""
    return f"dg:{{{key_id}}}:dismissed"


def queue_evalsha(pipe, sha: str, keys: list[str], args) -> None:
    """Adds one script call to a non-transactional pipeline. redis-py refuses `pipe.evalsha`
    on a Redis Cluster pipeline, but routes a raw EVALSHA by its keys like any command."""
    pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)


def load_lua(name: str) -> str:
    return resources.files("service").joinpath("lua", f"{name}.lua").read_text()


class Store:
    """One Redis client and the Lua scripts registered on it."""

    def __init__(self, client, *, cluster: bool, embedded: bool) -> None:
        self.client = client
        self.cluster = cluster
        self.embedded = embedded
        self.scripts: dict[str, AsyncScript] = {
            name: client.register_script(load_lua(name)) for name in SCRIPT_NAMES
        }

    async def load_scripts(self) -> None:
        """Load every script once at start; EVALSHA re-loads by itself after a Redis restart."""
        for script in self.scripts.values():
            script.sha = await self.client.script_load(script.script)

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def close(self) -> None:
        await self.client.aclose()


async def connect(url: str | None, *, timeout: float) -> Store:
    """A Store for `url`; with no URL, an embedded in-process Redis (fakeredis with Lua)."""
    if url is None:
        import fakeredis

        store = Store(fakeredis.FakeAsyncRedis(), cluster=False, embedded=True)
        await store.load_scripts()
        return store
    options = dict(
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=0,
    )
    probe = aioredis.Redis.from_url(url, **options)
    try:
        info = await probe.info("cluster")
        is_cluster = bool(info.get("cluster_enabled"))
    except (aioredis.RedisError, OSError) as exc:
        log.warning("Redis unreachable at start (%s); continuing as standalone, will reconnect", exc)
        is_cluster = False
    finally:
        await probe.aclose()
    if is_cluster:
        client = RedisCluster.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, max_connections=MAX_CONNECTIONS
        )
        await client.initialize()
    else:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=timeout, **options
        )
        client = aioredis.Redis.from_pool(pool)  # the client owns the pool, so close() closes it
    store = Store(client, cluster=is_cluster, embedded=False)
    try:
        await store.load_scripts()
    except (aioredis.RedisError, OSError) as exc:
        log.warning("could not load Lua scripts yet (%s); they load on first use", exc)
    log.info("connected to Redis%s", " Cluster" if is_cluster else "")
    return store
