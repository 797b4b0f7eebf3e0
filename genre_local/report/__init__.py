"""`genre-local report`: GENRE's result views (paper Tables 3-8, Figs 6-7) from stored rows.

store/results.py reads the store into typed rows; runs.py indexes training runs per
configuration and seed; each module under views/ declares one view (compute, empty note, CSV,
Rich table, plot, the runs behind it); build.py renders every declared view the same way and
html.py puts them, with the runs, cost and the generation samples of samples.py, into one
self-contained index.html.
"""
