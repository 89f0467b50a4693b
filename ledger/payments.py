"""Payment recipes, under the name users import: ``from ledger import payments``.

The recipes are the write side's (:mod:`ledger.commands.payments`, on
:mod:`ledger.commands.flows`); this module is part of the public face and only
re-exports them, all of them (the names in their ``__all__``).
"""

from ledger.commands.payments import *  # noqa: F403
from ledger.commands.payments import __all__  # noqa: F401 - the same names
