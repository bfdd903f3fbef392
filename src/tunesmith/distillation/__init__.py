"""Distillation: a teacher answers prompts, the student learns the answers."""
