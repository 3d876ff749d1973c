"""Storage: SQLAlchemy models, database set-up (SQLite and PostgreSQL), repositories and migrations."""
