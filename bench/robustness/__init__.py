"""Measurements of the services under hostile clients, overload and faults, each a
``python -m bench.robustness.<name>`` entry (the soak also ``python -m bench soak``): slow and
idle connection floods with and without the nginx proxy, a worker SIGKILLed under load, memory
per upload, goodput under overload, and the soak of good and bad requests at saturation."""
