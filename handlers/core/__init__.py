"""Shared run-time core: configuration, AWS client factory, Sentry reporting."""
