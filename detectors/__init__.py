"""Pure detection code: no I/O, no Redis, no HTTP."""
