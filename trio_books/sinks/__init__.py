"""Optional consumers of the books (e.g. Redis Streams)."""
