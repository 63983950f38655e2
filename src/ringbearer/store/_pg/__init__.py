"""The PostgreSQL store: several daemons sharing one database (work in progress: the
queue's core, its leases and fencing, and the coordination of nodes)."""
