"""Configuration (schema, defaults, examples) and the composition root that builds the service from it."""
