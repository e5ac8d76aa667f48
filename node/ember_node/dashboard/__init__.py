"""The head's web dashboard: overview, tasks, actors, objects, jobs and live logs.

- :mod:`.auth`: the cluster token, the login cookie (pure);
- :mod:`.data`: what the pages show, read through the agent's socket as ``ember list`` does;
- :mod:`.pages`: server-rendered, escaped HTML (pure);
- :mod:`.server`: the HTTP server thread (stdlib), its routes and security headers.

The JavaScript and CSS in ``static/`` are plain files: no build step, nothing from a CDN.
"""
