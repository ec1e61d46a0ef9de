"""The pure domain of sideline: no I/O, no clock, no randomness of its own."""
