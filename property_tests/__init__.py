"""Hypothesis property tests: random workflows, interleavings and crash points."""
