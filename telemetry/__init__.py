"""Process-wide setup shared by the API, the writers and the notice worker: the log format
(`telemetry.logs`), and a command's output into a pipe whose reader may leave first
(`telemetry.pipes`).

A leaf package of its own: the adapters import it and it imports none of them, nor any store, so
no adapter depends on another for a log format or a command's exit.
"""
