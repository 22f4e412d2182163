"""CommuniGate Pro as a migration source: account settings, domain aliases and the store overview."""
