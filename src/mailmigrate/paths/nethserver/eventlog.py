"""The event log of NethServer's procedures is the step runner's :class:`~mailmigrate.paths.journal.EventLog`;
this name stays for the NS7 -> NS8 modules that import it from here."""

from ..journal import Entry, EventLog

__all__ = ["Entry", "EventLog"]
