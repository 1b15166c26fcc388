"""What a reviewer does about a key or a cluster (block, throttle, unblock, dismiss, note),
from the console's forms and `/admin/api`, through the one door (service/decisions.py).

A reviewer's decision carries `set_by = "reviewer:<name>"`, so the scorer never overrides
it. A dismissal additionally marks the key for `admin.dismiss_quiet_period`: until that ends
the scorer records its flags but sets no automatic throttle or block.
"""

from __future__ import annotations

from ..decisions import CLUSTER_ID, KEY_ID, Actor, Policy, apply_decision, clean_text, validate
from ..errors import BadRequest, NotFound
from ..records.audit import append_audit
from ..records.clusters import read_cluster


async def act_on_key(client, settings, reviewer, key_id: str, action: str, *, reason: str = "",
                     expires_in=None, tier: str | None = None, note: str | None = None,
                     audit_details: dict | None = None, alerts=None) -> dict:
    """Apply one reviewer action to one key; returns what changed (see `apply_decision`)."""
    return await apply_decision(client, Policy.of(settings), Actor("reviewer", reviewer.name), key_id, action,
                                reason=reason, expires_in=expires_in, tier=tier, note=note,
                                audit_details=audit_details, alerts=alerts)


async def act_on_cluster(client, settings, reviewer, cluster_id: str, action: str, *, reason: str = "",
                         expires_in=None, tier: str | None = None, note: str | None = None, alerts=None) -> dict:
    """The same action on every current member of a linkage cluster: one audit entry per
    member (each names the cluster) and one for the cluster itself."""
    if not isinstance(cluster_id, str) or not CLUSTER_ID.match(cluster_id):
        raise BadRequest("Not a cluster id (lk- and hex characters); see /admin/api/clusters.",
                         code="invalid_cluster_id")
    cluster = await read_cluster(client, cluster_id)
    if cluster is None:
        raise NotFound(f"No current cluster {cluster_id!r}; see /admin/api/clusters.")
    members = [member for member in cluster.get("members", []) if KEY_ID.match(member)]
    policy = Policy.of(settings)
    cleaned_reason, cleaned_note = clean_text(reason, note)
    validate(policy, action, reason=cleaned_reason, expires_in=expires_in, tier=tier, note=cleaned_note)
    results = [
        await act_on_key(client, settings, reviewer, member, action, reason=reason, expires_in=expires_in,
                         tier=tier, note=note, audit_details={"cluster_id": cluster_id}, alerts=alerts)
        for member in members
    ]
    audit_id = await append_audit(
        client, actor=reviewer.name, action=f"cluster_{action}", target=cluster_id,
        reason=cleaned_reason or cleaned_note,
        details={"members": members, "tier": tier, "expires_in": expires_in},
        retention_seconds=policy.audit_retention,
    )
    return {"cluster_id": cluster_id, "action": action, "members": members, "results": results,
            "audit_id": audit_id}
