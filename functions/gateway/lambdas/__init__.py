"""The Lambda functions' entry points, at the top of the layers: each builds what its
function needs (settings, AWS clients, logging) once per process and calls down into the
feature packages. api.py (ApiFunction, Mangum), usage.py (UsageAggregatorFunction,
UsageWritebackFunction), probe.py (EndpointProbeFunction). StreamFunction runs the same app
under uvicorn (functions/run.sh)."""
