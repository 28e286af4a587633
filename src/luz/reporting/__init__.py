"""Progress output, summaries, loggers and plots."""
