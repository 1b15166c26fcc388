"""Per-key decisions (allow, throttle to a tier, block with a reason), kept in Redis where the
admission script reads them in the same round trip as the rate limits.

An expiring decision is a Redis hash with a TTL: when it lapses the key is simply allowed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Literal

from ..store import decision_key

Action = Literal["allow", "throttle", "block"]


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str = ""
    tier: str = ""
    note: str = ""
    set_by: str = ""
    set_at: float = 0.0
    expires_at: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


async def set_decision(
    client,
    key_id: str,
    action: Action,
    *,
    reason: str = "",
    tier: str = "",
    note: str = "",
    set_by: str = "",
    ttl_seconds: float | None = None,
) -> Decision:
    """Write one key's decision; `allow` with no TTL removes any decision."""
    now = time.time()
    decision = Decision(
        action, reason, tier, note, set_by, now, now + ttl_seconds if ttl_seconds else None
    )
    name = decision_key(key_id)
    if action == "allow" and not ttl_seconds:
        await client.delete(name)
        return decision
    fields = {
        "action": action, "reason": reason, "tier": tier, "note": note,
        "set_by": set_by, "set_at": repr(now),
        "expires_at": repr(decision.expires_at) if decision.expires_at else "",
    }
    async with client.pipeline(transaction=False) as pipe:
        pipe.hset(name, mapping=fields)
        if ttl_seconds:
            pipe.pexpire(name, int(ttl_seconds * 1000))
        else:
            pipe.persist(name)
        await pipe.execute()
    return decision


async def get_decision(client, key_id: str) -> Decision:
    """The key's decision; a key with none is allowed."""
    raw = await client.hgetall(decision_key(key_id))
    if not raw:
        return Decision("allow")
    fields = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v for k, v in raw.items()}
    expires = fields.get("expires_at") or None
    return Decision(
        action=fields.get("action", "allow"),  # type: ignore[arg-type]
        reason=fields.get("reason", ""),
        tier=fields.get("tier", ""),
        note=fields.get("note", ""),
        set_by=fields.get("set_by", ""),
        set_at=float(fields.get("set_at") or 0),
        expires_at=float(expires) if expires else None,
    )
