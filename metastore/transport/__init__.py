"""The Twisted TCP protocol that carries Raft messages between peers."""
