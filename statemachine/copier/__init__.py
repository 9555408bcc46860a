"""Programs smrun ships into Jobs on the clusters (not imported by smrun itself at run time).

``delta.py`` applies one warm-migration backup round to a target volume; the warm itinerary puts
its text into a ConfigMap (``templates/warm/delta-copier.py`` links to it) and runs it in a stock
Python image. The package exists so that tests can import the program.
"""
