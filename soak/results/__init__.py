"""The results format: what ``soak run`` writes into a results directory and
how everything else reads it back.

One module per concern, and nothing outside this package formats or parses
a results file by hand:

- :mod:`soak.results.names`   file names, the run directory's name, timestamps
- :mod:`soak.results.hlog`    the HdrHistogram interval log (``<name>.hlog``)
- :mod:`soak.results.jsonl`   JSON lines and JSON documents
- :mod:`soak.results.writer`  the streaming, crash-safe writer of one run
- :mod:`soak.results.reader`  the tolerant reader: a killed or damaged run is
  read as far as it goes, and what was skipped is said
- :mod:`soak.results.problems` what a reader skipped, said and counted
"""
