"""Apps that `sideline worker --app tests.redis.apps.<module>:app` subprocesses load."""
