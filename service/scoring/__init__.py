"""The live scorer: event streams -> key windows -> detectors -> flags, decisions and linkage clusters."""
