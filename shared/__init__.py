"""Event Manager's common library: what two or more services need, and nothing else."""
