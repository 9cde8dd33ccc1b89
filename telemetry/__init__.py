"""Process-wide telemetry setup shared by the API and the writers (`telemetry.logs`).

A leaf package of its own: both adapters import it and it imports neither, nor any store, so
neither adapter depends on the other for a log format.
"""
