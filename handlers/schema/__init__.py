"""The definition language: event types in YAML (field specs, compiled checks, compatibility), its error, and
the rules every definition file — event types, metrics, models — is read with."""
