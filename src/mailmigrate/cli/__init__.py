"""Command-line interface: argument parsing and output only; every decision lives in the layers below."""
