"""The live scoring path run over traffic files and simulations: train, score, evaluate, report."""
