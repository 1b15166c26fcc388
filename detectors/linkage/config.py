"""The linkage pass's settings, each with the reason for its value (docs/detection.md).

Evidence comes in four classes, each worth at most 1 before its weight:
  template  the keys' template centroids point the same way (one template family), less
            what shared exact prompts explain (a public benchmark is not a campaign);
  timing    their activity over the day rises and falls together (one scheduler);
  network   they send from the same /24 or /64 (one proxy pool, office, carrier, reseller);
  client    they share a user agent, header order, system prompt or sampling vector (one
            script, SDK or app).
Honest keys share network and client evidence all the time (an office, a carrier, every
user of a popular app), so an edge needs two classes and one of them behavioural
(template or timing): what one operator's scripts do, not what software they run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .typical import TYPICAL_BITS

WEIGHTS = {
    "template": 1.0,  # a script's prompts: the strongest sign of one operator
    "timing": 1.0,  # one scheduler; independent people follow their own days
    "network": 0.8,  # offices, carriers and resellers share addresses innocently
    "client": 0.8,  # every user of one app or SDK shares all of it
}
BEHAVIOURAL = ("template", "timing")


@dataclass(frozen=True, slots=True)
class LinkageConfig:
    window_s: float = 86400.0  # keys active in the last day take part in a pass
    min_requests: int = 5  # fewer requests say nothing about a key's habits
    template_min_prompts: int = 6  # a centroid of fewer prompts is mostly noise
    timing_min_events: int = 6  # ditto for a day's activity
    # Evidence ramps from 0 at the first value to 1 at the second. Centroid cosine: unrelated
    # keys sit near 0 (90% below 0.25), one template family's keys at 0.85-0.95.
    template_cosine: tuple[float, float] = (0.35, 0.8)
    # Correlation of 30-minute activity beyond the gateway's daily rhythm: unrelated keys
    # 90% below 0.25, keys of one scheduler 0.55-0.9.
    timing_correlation: tuple[float, float] = (0.3, 0.7)
    # A value covering less than this share of a key's traffic is not what the key is.
    min_token_share: float = 0.2
    # Document frequency -> weight: 1 up to `rare`, falling (in log) to 0 at `popular`;
    # each the larger of an absolute count and a share of the keys in the pass.
    rare_keys: int = 100
    rare_share: float = 0.002
    popular_keys: int = 1000
    popular_share: float = 0.2
    weights: dict[str, float] = field(default_factory=lambda: dict(WEIGHTS))
    class_min: float = 0.3  # evidence below this does not count as a class for the edge rule
    edge_min: float = 1.2  # weighted evidence an edge needs
    # LSH: 8 bands of 16 random-hyperplane bits; keys at cosine 0.9 share a band with
    # probability ~0.5, unrelated keys ~1e-4.
    bands: int = 8
    band_bits: int = 16
    bucket_cap: int = 100  # buckets up to this size are compared all-pairs ...
    ring_span: int = 4  # ... larger ones only each member with its 4 next in 2 orders
    min_members: int = 5  # fewer keys are no network worth the name
    harvest_min: float = 0.6  # share of harvest-shaped requests (honest clusters: < 0.45)
    # A flagged cluster shows two signs of one operator: template coherence of at least
    # `family_min` (one family's keys: 0.87-0.97; keys asking about one topic: up to 0.8),
    # synchrony or an even split of at least `coordination_min` (independent keys: < 0.35).
    family_min: float = 0.85
    coordination_min: float = 0.5
    # A member is flagged only if it matches the rest on two of: template (centroid against
    # the others'), timing (rhythm against theirs), client (share of its traffic with the
    # cluster's characteristic values). Honest keys caught in a network's cluster were seen
    # at up to 0.51 / 0.91 / 0.40; network members at 0.79+ on template unless they
    # paraphrase, 0.5+ on timing unless their network has no rhythm, 1.0 on client (a
    # reseller's key 0.5: half its traffic is its honest customers').
    member_fit: tuple[float, float, float] = (0.6, 0.5, 0.5)
    benchmark_overlap: float = 0.3  # exact-prompt Jaccard above this: a shared benchmark
    seed: int = 7  # the LSH hyperplanes; fixed so every pass and process agrees
    typical_bits: tuple[float, ...] = TYPICAL_BITS  # ordinary text's fingerprint bits (typical.py)

    def __post_init__(self) -> None:
        if set(self.weights) != set(WEIGHTS):
            raise ValueError(f"linkage weights must name exactly {', '.join(WEIGHTS)}")
        if len(self.typical_bits) != 64:
            raise ValueError("typical_bits needs the share of each of the 64 fingerprint bits")
        if self.bands * self.band_bits > 512 or self.band_bits > 30:
            raise ValueError("linkage LSH: at most 512 hyperplanes and 30 bits a band")
