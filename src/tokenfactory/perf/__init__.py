"""The performance model: how long work takes on a GPU, and what it holds in memory."""
