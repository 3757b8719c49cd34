"""One module per command (or family of commands); each has ``register(cli)``."""
