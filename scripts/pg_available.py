"""Exit 0 when the PostgreSQL server named by the URL argument accepts connections, else 1.
Used by `make test` to decide on the PostgreSQL pass."""

from __future__ import annotations

import sys

import psycopg


def main() -> int:
    url = sys.argv[1].replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL unreachable: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
