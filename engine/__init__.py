"""The reservation domain: what an order and a reservation are, and the Lua engine that decides."""
