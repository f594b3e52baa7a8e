"""Deploy-time tooling (never shipped): packaging, humilis launcher, rendering, preview."""
