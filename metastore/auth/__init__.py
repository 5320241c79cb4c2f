"""Authentication and role-based access control, etcd's model: users with
passwords, roles with key-range permissions, the ``root`` user and role,
tokens, and the one check every client API makes (``checker``)."""
