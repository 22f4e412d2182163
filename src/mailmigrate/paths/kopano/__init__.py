"""Zarafa -> Kopano drop-in migration and Kopano upgrade helpers (seeds 000 and 001)."""
