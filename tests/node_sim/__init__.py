"""The real driver (``metastore.node``) under seeded schedules."""
