"""The job contract both sides import: models, Redis keys, job-state scripts, settings."""
