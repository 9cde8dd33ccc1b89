"""The order domain: what an order, a basket and a hold are, and the Lua engine that places them."""
