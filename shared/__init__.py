"""Framework-neutral code shared by training, services and bench."""
