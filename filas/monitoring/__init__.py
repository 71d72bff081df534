"""Queue monitoring: consumer-group lag, produce/consume rates and the bottleneck they point at.

``samples`` holds the plain data and the pure rate arithmetic, ``rules`` the bottleneck rules,
``collector`` the only Kafka-facing part (AdminClient). Everything but the collector runs
without a broker, so the arithmetic and the rules are unit-tested on hand-made samples.
"""
