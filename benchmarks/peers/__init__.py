"""sideline side by side with dramatiq: the apps each worker runs, and the driver (compare.py)."""
