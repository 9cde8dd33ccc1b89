"""Geography: H3 cells and rings around a customer, great-circle distances."""
