"""Event tracking: the Kinesis consumer that archives, validates and routes marketplace events."""
