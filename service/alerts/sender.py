"""Alerts: new flags and blocks POSTed to webhooks, signed, retried, and never in the way.

`AlertSender.notify(event)` shapes the alert and puts it on each matching webhook's bounded
queue without touching the network, so neither the scorer nor a console action waits on a
receiver; a full queue drops the alert (counted, logged). One task per webhook delivers its
queue in order, retrying connection errors, timeouts, 429 and 5xx with doubling, jittered
backoff, so a dead webhook holds up only its own queue. What an alert says and how it is
signed: payloads.py.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

import aiohttp
from redis.exceptions import RedisError

from detectors.ladder import Change

from .. import metrics
from ..config import AlertsConfig, WebhookConfig
from ..records.flags import cluster_of
from ..store import cluster_alerted_key
from .payloads import (
    Alert,
    change_event,
    render_body,
    shape_event,
    signature_header,
)

log = logging.getLogger("distillguard.alerts")

# A cluster alerts once (its first member flagged) for this long, not once per member.
CLUSTER_ALERT_SECONDS = 7 * 86400
# Repeated warnings about one webhook (drops, alerts given up) at most this often.
LOG_EVERY_SECONDS = 30.0


@dataclass(slots=True)
class _Complaint:
    """Warnings about one webhook, rate-limited: the first at once, then a count."""

    logged_at: float = float("-inf")
    suppressed: int = 0

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.logged_at >= LOG_EVERY_SECONDS:
            self.logged_at = now
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        count, self.suppressed = self.suppressed, 0
        return count


class Webhook:
    """One receiver: its queue, its filter, and whether it is failing now."""

    def __init__(self, config: WebhookConfig, index: int, queue_size: int) -> None:
        self.label = config.name or str(index)  # metrics and logs name it so, never by URL
        self.url = config.url
        self.secret = config.secret.get_secret_value().encode() if config.secret else None
        self.format = config.format
        self.events = frozenset(config.events)
        self.queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=queue_size)
        self.busy = False  # an alert is out of the queue and not yet settled
        self.failing = False
        self.dropped = _Complaint()
        self.gave_up = _Complaint()

    def gauge(self) -> None:
        metrics.ALERT_QUEUE_DEPTH.labels(self.label).set(self.queue.qsize())


class AlertSender:
    """The process's alert queues and their delivery tasks; `notify` is all callers need."""

    def __init__(self, config: AlertsConfig, public_url: str | None = None) -> None:
        self.config = config
        self.public_url = public_url.rstrip("/") if public_url else None
        self.webhooks = [Webhook(hook, index, config.queue_size) for index, hook in enumerate(config.webhooks)]
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []
        self._closed = False

    @property
    def enabled(self) -> bool:
        return bool(self.webhooks)

    def start(self) -> None:
        """One delivery task per webhook, in the running loop; nothing when none is configured."""
        if not self.webhooks or self._tasks:
            return
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout))
        for webhook in self.webhooks:
            webhook.gauge()
            self._tasks.append(asyncio.create_task(self._deliver_forever(webhook)))

    async def notify(self, event: dict) -> None:
        """Queue an alert for every webhook that wants its `event` kind. Never waits on the
        network and never raises: an alert that cannot be queued is dropped and counted."""
        self.notify_nowait(event)

    def notify_nowait(self, event: dict) -> None:
        if not self.webhooks:
            return
        try:
            alert = shape_event(event, self.public_url)
        except Exception:  # a malformed event must not fail the scorer or a console action
            log.exception("alert event %r could not be shaped; dropped", event.get("event"))
            metrics.ALERTS_DROPPED.labels("malformed").inc()
            return
        for webhook in self.webhooks:
            if alert.event not in webhook.events:
                continue
            if self._closed:
                metrics.ALERTS_DROPPED.labels("shutdown").inc()
                continue
            try:
                webhook.queue.put_nowait(alert)
            except asyncio.QueueFull:
                metrics.ALERTS_DROPPED.labels("queue_full").inc()
                if webhook.dropped.due():
                    log.warning("alert queue of webhook %s is full (%d): %s alert %s dropped, %d more since last said",
                                webhook.label, webhook.queue.maxsize, alert.event, alert.id,
                                webhook.dropped.take_suppressed())
                continue
            webhook.gauge()

    async def close(self) -> None:
        """Give queued alerts `shutdown_grace` to go out, then stop; what is left is counted dropped."""
        self._closed = True
        if self._tasks:
            pending = [asyncio.ensure_future(webhook.queue.join()) for webhook in self.webhooks]
            _, waiting = await asyncio.wait(pending, timeout=self.config.shutdown_grace)
            for future in pending:
                future.cancel()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
            for webhook in self.webhooks:
                left = webhook.queue.qsize() + webhook.busy
                if left:
                    metrics.ALERTS_DROPPED.labels("shutdown").inc(left)
                    log.warning("webhook %s: %d alert(s) not delivered before shutdown", webhook.label, left)
            if waiting:
                log.info("alerts: shutdown grace of %gs ran out", self.config.shutdown_grace)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _deliver_forever(self, webhook: Webhook) -> None:
        while True:
            alert = await webhook.queue.get()
            webhook.busy = True
            webhook.gauge()
            try:
                await self._deliver(webhook, alert)
            except Exception:  # never let one alert end the webhook's task
                log.exception("webhook %s: alert %s failed unexpectedly", webhook.label, alert.id)
                metrics.ALERTS_DROPPED.labels("gave_up").inc()
            finally:
                webhook.busy = False
                webhook.queue.task_done()

    async def _deliver(self, webhook: Webhook, alert: Alert) -> None:
        """Up to `max_attempts` POSTs; 2xx settles it, a 4xx other than 429 ends it at once."""
        body = render_body(alert, webhook.format)
        failure = None
        for attempt in range(1, self.config.max_attempts + 1):
            failure, retry_after = await self._post(webhook, alert, body)
            if failure is None:
                metrics.ALERTS_SENT.labels(webhook.label).inc()
                if webhook.failing:
                    webhook.failing = False
                    log.info("webhook %s answers again", webhook.label)
                return
            metrics.ALERT_FAILURES.labels(webhook.label, failure).inc()
            if not webhook.failing:
                webhook.failing = True
                log.warning("webhook %s failing (%s) on %s alert %s; retrying with backoff",
                            webhook.label, failure, alert.event, alert.id)
            if failure not in RETRIED or attempt == self.config.max_attempts:
                break
            await asyncio.sleep(self.backoff(attempt, retry_after))
        metrics.ALERTS_DROPPED.labels("gave_up").inc()
        if webhook.gave_up.due():
            log.warning("webhook %s: %s alert %s given up after %d attempt(s), last %s; %d more given up "
                        "since last said", webhook.label, alert.event, alert.id, attempt, failure,
                        webhook.gave_up.take_suppressed())

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Doubling from `backoff`, capped at `backoff_max`, jittered to 50-100% so many
        gateways do not retry in step; a receiver's Retry-After is honoured up to the cap."""
        delay = min(self.config.backoff * 2 ** (attempt - 1), self.config.backoff_max)
        delay *= random.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.backoff_max))
        return delay

    async def _post(self, webhook: Webhook, alert: Alert, body: bytes) -> tuple[str | None, float | None]:
        """One attempt: None when accepted, else why it failed (a metric label) and any Retry-After."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "distillguard-alerts",
            "X-Distillguard-Event": alert.event,
            "X-Distillguard-Delivery": alert.id,  # the same on every retry: receivers de-duplicate on it
        }
        if webhook.secret is not None:
            headers["X-Distillguard-Signature"] = signature_header(webhook.secret, body, int(time.time()))
        try:
            async with self._session.post(webhook.url, data=body, headers=headers, allow_redirects=False) as response:
                await response.read()
                status = response.status
                retry_after = _seconds(response.headers.get("Retry-After"))
        except TimeoutError:
            return "timeout", None
        except (aiohttp.ClientError, OSError):  # the message may hold the URL: only the kind is reported
            return "connection", None
        if 200 <= status < 300:
            return None, None
        if status == 429:
            return "status_429", retry_after
        return ("status_5xx" if status >= 500 else f"status_{status // 100}xx"), None


RETRIED = frozenset({"timeout", "connection", "status_429", "status_5xx"})


def _seconds(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


async def alert_on_flag(alerts: AlertSender | None, client, change: Change, *, first_flag: bool) -> None:
    """The scorer's alert for a key's first flag (a linkage cluster's first member only, as
    `cluster_flag`); the throttle or block it enforces is alerted by service/decisions.py."""
    if alerts is None or not alerts.enabled or not first_flag or change.action == "none":
        return
    cluster_id = cluster_of(change)
    if cluster_id is None:
        await alerts.notify(change_event("flag", change))
    elif await _first_of_cluster(client, cluster_id):
        await alerts.notify(change_event("cluster_flag", change))


async def _first_of_cluster(client, cluster_id: str) -> bool:
    """True for the first member's flag across all scorers; on a Redis error, alert anyway."""
    try:
        return bool(await client.set(cluster_alerted_key(cluster_id), "1", nx=True, ex=CLUSTER_ALERT_SECONDS))
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("cluster alert check for %s failed (%s); alerting", cluster_id, type(exc).__name__)
        return True


def public_url_of(settings) -> str | None:
    """Where reviewers open the console (`admin.public_url`); alerts link relative paths without it."""
    return getattr(getattr(settings, "admin", None), "public_url", None)
