"""Stream consumers that persist what the engine decided: orders to PostgreSQL
(`writers.orders`) and inventory to MongoDB (`writers.inventory`), each run by a
`writers.consumer.GroupConsumer` over the partition streams (`stores.streams`); the notifier
(`writers.notifier`) turns order events into notice jobs; entries none of them can persist go to
`writers.dead_letters`. Run them with `python -m writers`.
"""
