"""Stand-alone measurements that explain a figure of the comparison rather than produce
one, each a ``python -m bench.studies.<name>`` entry: the serving overhead over the bare
runtime and the JPEG decode micro-benchmark."""
