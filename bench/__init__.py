"""``make bench`` / ``python -m bench``: throughput ratios against baselines measured in the same run.

Nothing here is shipped; it only drives the real code (``handlers.tracking``) and simple baselines on the
same inputs, alternating candidate and baseline rounds and keeping the best round of each, so the printed
figures are ratios, never absolute seconds compared with some other machine.
"""
