"""Tests of luz.metrics."""
