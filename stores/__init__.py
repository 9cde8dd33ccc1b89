"""Connections to the three stores: one module per store, configured from the environment; and
how to stop a task that talks to them (`tasks.py`)."""
