"""``python -m ledger.adapters.cli``: the ``ledger`` command line."""

from ledger.adapters.cli import main

if __name__ == "__main__":
    main()
