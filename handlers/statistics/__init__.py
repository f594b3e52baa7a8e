"""Real-time statistics: YAML metric definitions aggregated over Lambda tumbling windows of the event stream."""
