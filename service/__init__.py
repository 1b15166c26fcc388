"""distillguard: the gateway processes and their wiring."""
