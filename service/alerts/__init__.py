"""Alerts to webhooks: what they say and how they are signed (payloads.py), and the queues
that deliver them without holding up the scorer or a reviewer (sender.py)."""
