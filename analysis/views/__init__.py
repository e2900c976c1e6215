"""The views: the essay's tables and experiments (Tables of plain rows) built from a prompt's Trace and
the search layer's matches, and analyze() that runs them all into a Report.

Views import the search layer and the report layer (Table, the page's size limits); never the CLI.
"""
