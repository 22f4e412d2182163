"""CommuniGate account and domain settings: the reading lives in the directory layer
(:mod:`mailmigrate.directory.communigate`); the names stay importable here for the CommuniGate path."""

from ...directory.communigate import (  # noqa: F401
    ENCRYPTED_MARKER,
    FORWARD_ACTIONS,
    CGAccount,
    CGDomain,
    _read_dict,
    forwarding_addresses,
    password_state,
    read_account,
    read_domain,
)
