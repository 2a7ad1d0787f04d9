"""Lotkeeper's reservation engine: spots, claims, tickets and the event log.

`core` has no user interface. Frontends open a `Site` with `core.site.open_site`
and call the service functions in `core.services`; they never touch sessions or
ORM rows. Importing `core` must not load Textual, Rich, escpos or stripe.
"""

__version__ = "0.1.0"
