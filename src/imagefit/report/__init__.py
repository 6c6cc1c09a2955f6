"""report.html and the other pages: sections, figures, the HTML page, the comparison of runs."""
