"""The usage dashboard: a page with usage per day by key or model, the top keys and models,
errors and refusals, each key's limits and budget, and a CSV download, read from the
rollups with the operator's own AWS credentials (`gateway dashboard`; docs/DASHBOARD.md)."""
