"""mailmigrate: move a whole mail server — mailboxes, accounts, aliases, directory data, configuration."""

__version__ = "0.1.0"
