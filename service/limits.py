"""Rate-limit rules and the per-key decision check: one EVALSHA before a request is forwarded.

Windows are exact sliding logs (every admitted request, or token reservation, kept with
its time until it leaves the window), so no client gets more than its limit in any
window, across edges included. A refused request spends nothing: the script checks
every limit before it records any. Redis trouble never hangs a request: after
`redis_timeout` the configured policy (fail open or closed) decides.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field

from redis.exceptions import NoScriptError, RedisError

from . import metrics
from .config import LimitsConfig, Settings, TierLimits
from .errors import KeyBlocked, LimiterUnavailable, RateLimited, UnknownKey
from .store import MAX_CONNECTIONS, KeyNames, Store, ip_log_key, queue_evalsha

log = logging.getLogger("distillguard.limits")

UNLIMITED = -1


@dataclass(slots=True)
class Admission:
    """What admission decided for one admitted request, and the headers it earns."""

    key_id: str
    request_id: str
    tier: str
    reserved_tokens: int
    recorded: bool
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def format_reset(ms: float) -> str:
    """OpenAI's reset format: `20ms`, `1.5s`, `6m0s`, `1h2m3s`."""
    ms = max(int(ms), 0)
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours >= 1:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes >= 1:
        return f"{int(minutes)}m{text}"
    return text


def _tier_block(name: str, tier: TierLimits) -> tuple[str, ...]:
    requests, tokens = tier.requests, tier.tokens
    return (
        name,
        str(requests.limit if requests else UNLIMITED),
        str(int(requests.window * 1000) if requests else 0),
        str(tokens.limit if tokens else UNLIMITED),
        str(int(tokens.window * 1000) if tokens else 0),
        str(tier.concurrency if tier.concurrency is not None else UNLIMITED),
    )


def _rate_headers(reply: list) -> list[tuple[bytes, bytes]]:
    _, _, _, req_limit, req_remaining, req_reset, tok_limit, tok_remaining, tok_reset = reply[:9]
    headers = []
    if int(req_limit) >= 0:
        headers += [
            (b"x-ratelimit-limit-requests", str(req_limit).encode()),
            (b"x-ratelimit-remaining-requests", str(req_remaining).encode()),
            (b"x-ratelimit-reset-requests", format_reset(req_reset).encode()),
        ]
    if int(tok_limit) >= 0:
        headers += [
            (b"x-ratelimit-limit-tokens", str(tok_limit).encode()),
            (b"x-ratelimit-remaining-tokens", str(tok_remaining).encode()),
            (b"x-ratelimit-reset-tokens", format_reset(tok_reset).encode()),
        ]
    return headers


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Limiter:
    """Admits, settles and renews requests against one key's limits and decision."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.config: LimitsConfig = settings.limits
        self.timeout = settings.redis_timeout
        self.fail_closed = settings.redis_failure_policy == "closed"
        self.lease_ms = int(self.config.lease_seconds * 1000)
        self._tier_blocks = {name: _tier_block(name, tier) for name, tier in self.config.tiers.items()}
        self._throttle_blocks = tuple(part for block in self._tier_blocks.values() for part in block)
        self._key_blocks = {key_id: self._block_for_entry(key_id) for key_id in self.config.keys}
        per_ip = self.config.per_ip
        self._ip_args = (str(per_ip.limit), str(int(per_ip.window * 1000))) if per_ip else ("0", "0")
        self._request_counter = 0
        self._request_prefix = f"{os.getpid():x}-{os.urandom(4).hex()}-"
        self._last_error_log = 0.0
        # The cluster client fails rather than queues when a node's pool is full, and a
        # split admission holds two connections; queue here instead.
        self._split_slots = asyncio.Semaphore(MAX_CONNECTIONS // 2)
        self._settlements: list[tuple[list[str], tuple]] = []
        self._settled = asyncio.Event()

    def _block_for_entry(self, key_id: str) -> tuple[str, ...]:
        entry = self.config.keys[key_id]
        tier_name = entry.tier or self.config.default_tier
        tier = self.config.tiers[tier_name]
        merged = TierLimits(
            requests=entry.requests or tier.requests,
            tokens=entry.tokens or tier.tokens,
            concurrency=entry.concurrency if entry.concurrency is not None else tier.concurrency,
        )
        return _tier_block(tier_name, merged)

    def tier_block(self, key_id: str) -> tuple[str, ...]:
        """The key's own limits (its tier with per-key overrides); unknown keys per policy."""
        block = self._key_blocks.get(key_id)
        if block is not None:
            return block
        if self.config.unknown_keys == "reject":
            raise UnknownKey("Incorrect API key provided.")
        return self._tier_blocks[self.config.default_tier]

    def new_request_id(self) -> str:
        self._request_counter += 1
        return f"{self._request_prefix}{self._request_counter:x}"

    async def admit(self, key_id: str, ip_id: str | None, token_cost: int) -> Admission:
        """Check the decision and every limit; record the request only if all pass."""
        own = self.tier_block(key_id)
        request_id = self.new_request_id()
        names = KeyNames.for_key(key_id)
        args = (request_id, token_cost, self.lease_ms, *self._ip_args, *own, *self._throttle_blocks)
        use_ip = ip_id is not None and self._ip_args[0] != "0"
        try:
            async with asyncio.timeout(self.timeout):
                if use_ip and self.store.cluster:
                    async with self._split_slots:
                        reply = await self._admit_split(names, ip_id, request_id, args)
                else:
                    keys = names.admit_keys + ([ip_log_key(ip_id)] if use_ip else [])
                    reply = await self.store.scripts["admit"](keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            return self._on_redis_failure("admit", exc, key_id, request_id, own[0])
        status, rule = int(reply[0]), _text(reply[1])
        if status == 2:
            metrics.DECISIONS_ENFORCED.labels("block").inc()
            metrics.REJECTIONS.labels("blocked").inc()
            raise KeyBlocked(f"This API key is blocked ({rule}).", code=rule)
        tier = _text(reply[2])
        if _text(reply[10]) == "throttle":
            metrics.DECISIONS_ENFORCED.labels("throttle").inc()
        headers = _rate_headers(reply)
        if status == 1:
            metrics.REJECTIONS.labels(rule).inc()
            retry_seconds = max(1, -(-int(reply[9]) // 1000))
            headers.append((b"retry-after", str(retry_seconds).encode()))
            raise RateLimited(_limit_message(rule, tier), rule=rule, tier=tier, headers=headers)
        return Admission(key_id, request_id, tier, token_cost, True, headers)

    async def _admit_split(self, names: KeyNames, ip_id: str, request_id: str, args: tuple) -> list:
        """Cluster mode: the IP log lives in another slot, so run both, then undo the half that passed."""
        key_reply, ip_reply = await asyncio.gather(
            self.store.scripts["admit"](keys=names.admit_keys, args=args),
            self.store.scripts["window_admit"](
                keys=[ip_log_key(ip_id)], args=[request_id, *self._ip_args]
            ),
        )
        key_passed, ip_passed = int(key_reply[0]) == 0, int(ip_reply[0]) == 1
        if key_passed and not ip_passed:
            await self.store.scripts["settle"](keys=names.settle_keys, args=[request_id, -1])
            return [1, "ip", *key_reply[2:9], ip_reply[1], key_reply[10]]
        if ip_passed and not key_passed:
            await self.store.client.zrem(ip_log_key(ip_id), request_id)
        return key_reply

    def _on_redis_failure(self, operation: str, exc: Exception, key_id: str, request_id: str, tier: str) -> Admission:
        metrics.REDIS_ERRORS.labels(operation).inc()
        now = time.monotonic()
        if now - self._last_error_log > 1.0:
            self._last_error_log = now
            policy = "closed: refusing" if self.fail_closed else "open: forwarding unlimited"
            log.warning("Redis %s failed (%s: %s); failing %s", operation, type(exc).__name__, exc, policy)
        if self.fail_closed:
            raise LimiterUnavailable("The rate limiter is unavailable; try again shortly.")
        return Admission(key_id, request_id, tier, 0, False)

    async def settle(self, admission: Admission, tokens_used: int) -> None:
        """Replace the reservation by real usage and free the lease, off the request path.
        Settlements that arrive together go to Redis in one pipeline."""
        if not admission.recorded:
            return
        names = KeyNames.for_key(admission.key_id)
        self._settlements.append((names.settle_keys, (admission.request_id, max(tokens_used, 0))))
        if len(self._settlements) > 1:
            await self._settled.wait()
            return
        settled = self._settled = asyncio.Event()
        await asyncio.sleep(0)  # let the settlements of this loop turn join the batch
        batch, self._settlements = self._settlements, []
        try:
            await self._run_settlements(batch)
        finally:
            settled.set()

    async def _run_settlements(self, batch: list[tuple[list[str], tuple]]) -> None:
        script = self.store.scripts["settle"]
        try:
            async with asyncio.timeout(max(self.timeout, 1.0)):
                for _attempt in range(2):
                    async with self.store.client.pipeline(transaction=False) as pipe:
                        for keys, args in batch:
                            queue_evalsha(pipe, script.sha, keys, args)
                        results = await pipe.execute(raise_on_error=False)
                    if not any(isinstance(result, NoScriptError) for result in results):
                        break
                    await self.store.load_scripts()  # Redis restarted and forgot the scripts
        except (RedisError, OSError, TimeoutError) as exc:
            metrics.REDIS_ERRORS.labels("settle").inc()
            log.warning("Redis settle failed (%s); leases expire on their own", type(exc).__name__)

    async def renew(self, admissions: list[Admission]) -> None:
        """Extend the leases of requests still running."""
        script = self.store.scripts["renew"]
        try:
            async with asyncio.timeout(max(self.timeout, 1.0)):
                await asyncio.gather(
                    *(
                        script(keys=[KeyNames.for_key(a.key_id).leases], args=[a.request_id, self.lease_ms])
                        for a in admissions
                        if a.recorded
                    )
                )
        except (RedisError, OSError, TimeoutError) as exc:
            metrics.REDIS_ERRORS.labels("renew").inc()
            log.warning("Redis lease renewal failed (%s)", type(exc).__name__)


def _limit_message(rule: str, tier: str) -> str:
    what = {
        "requests": "requests per window",
        "tokens": "tokens per window",
        "concurrency": "concurrent requests",
        "ip": "requests per window from this client address",
    }.get(rule, rule)
    return f"Rate limit reached for {what} (tier {tier}). Retry after the time in the Retry-After header."
