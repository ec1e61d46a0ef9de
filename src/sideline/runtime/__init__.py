"""The application layer: client, worker, middleware and workflows, written against the ports."""
