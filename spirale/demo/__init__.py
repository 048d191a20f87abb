"""The demo: the whole product on the embedded default (SQLite, local outbox), with a moving clock."""
