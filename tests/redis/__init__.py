"""Tests against a real Redis server and real worker processes (marked `redis`)."""
