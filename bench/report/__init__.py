"""The comparison report: results.json to report.md and index.html (:mod:`.render`), its
tables (:mod:`.tables`), plots (:mod:`.plots`, matplotlib) and the training section
(:mod:`.training_info`). Empty on purpose: importing the package loads no matplotlib."""
