"""The config: cross-references checked before planning, and every stage's settings resolved."""
