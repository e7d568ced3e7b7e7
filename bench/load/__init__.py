"""Load generation for the comparison run: Locust's closed loop (subprocess + sample
plugin), the open-loop Poisson generator, the shared payload pool and the keep-alive HTTP
client."""
