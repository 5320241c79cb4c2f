"""Klein applications: the seed REST API, and later etcd v3 and admin."""
