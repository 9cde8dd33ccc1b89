"""Connections to the three stores: one module per store, configured from the environment."""
