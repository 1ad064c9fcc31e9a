"""Forewarn: correlate network events with subscribers and act before they complain."""

__version__ = "0.1.0"
