"""POST /v1/embeddings: forwarded to the embedding models of the models config."""
