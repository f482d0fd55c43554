"""Fluentd's configuration language: syntax (parser), value grammar (values), option binding (schema)."""
