"""Summaries and plots of results (the reporting callbacks live in `luz.callbacks`)."""
