"""Mail stores behind one small interface (see :mod:`mailmigrate.stores.base`)."""
