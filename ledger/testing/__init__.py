"""A test kit for applications built on the ledger.

* :func:`memory_ledger` - a ledger on a private in-memory store (SQLite in memory),
  with read models, for fast tests;
* :mod:`ledger.testing.strategies` - hypothesis strategies for amounts, account ids,
  balanced legs, entries and P2P payments;
* :class:`LedgerInvariants` - a hypothesis state machine to subclass: add rules that
  run your own flows through ``self.books`` (registering each write with
  :meth:`LedgerInvariants.remember`), and it checks after every step that every asset
  sums to zero, no account breaks its balance rule, every remembered request replays
  its first outcome, and the balances read model equals the store.

Needs the ``testing`` extra (``pip install 'ledger-engine[testing]'``, for hypothesis).
See ``examples/testing_kit/`` for a complete example.
"""

from ledger.testing.kit import LedgerInvariants, memory_ledger

__all__ = ["LedgerInvariants", "memory_ledger"]
