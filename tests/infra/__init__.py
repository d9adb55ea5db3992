"""Tests of the infrastructure code (infra/)."""
