"""The models this gateway serves: the registry (models config) and the /v1/models routes."""
