"""Storage adapters: each implements every port of `sideline.core.ports`."""
