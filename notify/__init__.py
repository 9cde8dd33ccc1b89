"""Customer notifications: rq jobs that send a notice by email (SMTP) and SMS (an HTTP provider),
each at most once per (order, event) and channel, retried with backoff until a person steps in."""
