"""Hugging Face: search, repo listings, file choices with fit verdicts, and resumable downloads."""
