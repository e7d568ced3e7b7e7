"""``python -m bench demo`` (``make demo``): synthetic data -> training -> the comparison run,
in one command. :mod:`.pipeline` holds the phases, :mod:`.children` how their child
processes run and stop."""
