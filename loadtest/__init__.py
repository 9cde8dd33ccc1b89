"""Load generation: the Locust swarm, the demo catalogue it runs against, and the benchmark."""
