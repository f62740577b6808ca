"""Trainers for both stages: one loop (trainer.py), what differs per stage (price.py, strategy.py)."""
