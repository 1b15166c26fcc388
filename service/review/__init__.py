"""What reviewers act on and are told: verdicts, labels (and the training they feed), audit trail, alerts."""
