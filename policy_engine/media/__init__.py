"""Probing and frame sampling (PyAV) and timecodes.

This package's ``__init__`` imports nothing heavy, so pure code may use ``timecode``.
"""
