"""`genre-local report`: GENRE's result views (paper Tables 3-8, Figs 6-7) from stored rows.

load.py reads the store into the plain rows of rows.py; views.py computes each view as a pure
function of those rows; records.py, render.py and plots.py turn views into CSV, Rich and PNG;
build.py ties one dataset's report together.
"""
