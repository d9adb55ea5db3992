"""Local development stack: DynamoDB tables (from template.yaml), simulated GPU, gateway."""
