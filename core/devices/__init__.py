"""Device adapters (printer, gate), each behind a small protocol and chosen by config."""
