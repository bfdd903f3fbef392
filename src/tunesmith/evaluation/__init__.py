"""Generation and evaluation of trained and base models."""
