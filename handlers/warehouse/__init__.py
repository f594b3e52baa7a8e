"""Warehouse run-time code: the loader that turns delivered objects into Redshift rows and Spectrum partitions."""
