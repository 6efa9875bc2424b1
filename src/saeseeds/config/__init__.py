"""The study config: schema and cross-key validation in one entry point, and the queries rules make of it."""
