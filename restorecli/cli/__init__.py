"""Typer wiring for the ``restore`` program: one module per command group, no logic."""
