"""Command line: ``python -m skhash benchmark`` (also the ``skhash`` script)."""

from skhash._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
