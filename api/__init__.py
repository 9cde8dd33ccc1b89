"""The HTTP API (Litestar, msgspec): one module per service area."""
