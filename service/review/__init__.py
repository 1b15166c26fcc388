"""What reviewers do: act on keys and clusters (through service/decisions.py), and train the next
model from their labels."""
