"""The bundled stack's host processes: an HAProxy and a Prometheus on this host."""
