"""Evaluation: the papers' metrics (face similarity, CLIP text alignment) and their reports."""
