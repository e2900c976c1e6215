"""The report layer: Table (the data of one view) and everything that formats it: the CSV files, the HTML
page and its layout, and the writer that puts them in a folder.

It imports the search layer (the "(high bias)" mark) and itself; never the views or the CLI.
"""
