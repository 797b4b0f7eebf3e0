"""One module per CLI command group; cli.py only wires them together."""
