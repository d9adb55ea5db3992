"""The HTTP routes: thin handlers that read a request, call down (the pipeline for the
metered routes, a query or the registry for the others) and answer. They sit above the
composition root (resources.py, reached through deps.py), which sits above the surfaces:
chat/, completions/, embeddings/ hold each API's wire models and adapters."""
