"""Traffic files and simulated traffic: the format every recorder, simulator and offline
command shares, and labelled scenarios of honest and harvesting clients."""

from .format import TrafficFormatError, TrafficRecord, TrafficWriter, read_traffic, write_record
from .scenarios import SCENARIOS, Scenario, generate

__all__ = [
    "SCENARIOS", "Scenario", "TrafficFormatError", "TrafficRecord", "TrafficWriter", "generate", "read_traffic",
    "write_record",
]
