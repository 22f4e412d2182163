"""SME Server / NethService -> NethServer import, and NethServer 7 -> 8 mail migration (docs/nethserver.md)."""
