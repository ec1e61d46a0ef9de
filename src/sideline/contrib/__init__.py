"""Integrations with other tools, each an optional extra: import the module you use."""
